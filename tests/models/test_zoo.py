"""Every registered model: forward shape, no NaN, spec, parameter counts."""

import json

import pytest
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.models import MODELS, create_model, list_models, register_model
from slimtorch.models.mobilenetv2 import make_divisible

NUM_OUTPUTS = {"mobilenet_v2": 1000, "minilm_l6": 384}
# causal language models return (batch, length, vocab) logits and load 100M+ parameters: tested in
# tests/quantize, tests/prune and tests/pipeline/test_llm_recipes.py on a tiny Llama instead
LANGUAGE_MODELS = {"smollm2_135m"}


@pytest.mark.parametrize("name", [n for n in list_models() if n not in LANGUAGE_MODELS])
def test_every_preset_forwards_to_the_right_shape(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    shape = model.example_input_shape
    batch = 1 if shape[-1] >= 224 else 3
    if getattr(model, "input_dtype", torch.float32) == torch.long:  # token ids (text models)
        x = torch.randint(1, 1000, (batch, *shape[1:]))
    else:
        x = torch.randn(batch, *shape[1:])
    with torch.no_grad():
        out = model(x)
    assert out.shape == (batch, NUM_OUTPUTS.get(name, 10))
    assert torch.isfinite(out).all()
    assert model.slimtorch_spec == {"name": name, "kwargs": {}}


@pytest.mark.parametrize(
    "name, params",
    [("lenet300_100", 266_610), ("lenet5", 431_080), ("mlp_784_128_10", 101_770), ("mobilenet_v2", 3_504_872)],
)
def test_parameter_counts_match_the_papers(name, params):
    assert sum(p.numel() for p in create_model(name).parameters()) == params


def test_exact_caffe_lenet5_has_same_count_and_no_conv_relu():
    model = create_model("lenet5", conv_relu=False)
    assert sum(p.numel() for p in model.parameters()) == 431_080
    assert [type(m).__name__ for m in model][:3] == ["Conv2d", "MaxPool2d", "Conv2d"]


def test_mlp_builder_layers_and_dropout():
    model = create_model("mlp", hidden=[1200, 1200], dropout=0.5, input_dropout=0.2)
    names = [n for n, _ in model.named_children()]
    assert names == ["flatten", "drop0", "fc1", "relu1", "drop1", "fc2", "relu2", "drop2", "fc3"]
    assert model.fc2.weight.shape == (1200, 1200)
    assert json.loads(json.dumps(model.slimtorch_spec))["kwargs"]["hidden"] == [1200, 1200]
    # the spec rebuilds the same architecture
    again = create_model(model.slimtorch_spec["name"], **model.slimtorch_spec["kwargs"])
    assert [n for n, _ in again.named_parameters()] == [n for n, _ in model.named_parameters()]


def test_resnet_depths_and_option_b_shortcuts():
    r20, r56 = create_model("resnet20"), create_model("resnet56")
    convs = lambda m: [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d) and "downsample" not in n]
    assert len(convs(r20)) + 1 == 20 and len(convs(r56)) + 1 == 56  # + the fc layer
    assert isinstance(r20.layer2[0].downsample[0], nn.Conv2d) and r20.layer1[0].downsample is None
    wide = create_model("resnet_cifar", depth=32, width=32, num_classes=100)
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 100) and wide.fc.in_features == 128
    with pytest.raises(ConfigError, match="6n\\+2"):
        create_model("resnet_cifar", depth=21)


def test_make_divisible_matches_torchvision_rounding():
    assert make_divisible(32 * 0.35, 8) == 16  # never below 90% after rounding: 11.2 -> 16
    assert make_divisible(32 * 0.5, 8) == 16
    assert make_divisible(1280 * 1.4, 8) == 1792
    small = create_model("mobilenet_v2", width_mult=0.5, num_classes=7)
    assert small.features[0][0].out_channels == 16 and small.classifier[1].out_features == 7
    assert small.classifier[1].in_features == 1280


def test_unknown_name_lists_available_models():
    with pytest.raises(ConfigError, match="available: .*lenet5"):
        create_model("lenet6")


def test_bad_kwarg_is_named():
    with pytest.raises(ConfigError, match="hiden"):
        create_model("mlp", hiden=(10,))
    with pytest.raises(ConfigError, match="JSON"):
        create_model("mlp", hidden=(10,), dropout=torch.tensor(0.1))


def test_user_builders_register_and_duplicates_raise():
    class Tiny(nn.Module):
        example_input_shape = (1, 4)

        def __init__(self, k: int):
            super().__init__()
            self.fc = nn.Linear(4, k)

        def forward(self, x):
            return self.fc(x)

    name = "test_tiny_user_model"
    if name not in MODELS:
        register_model(name)(lambda k=2: Tiny(k))
    model = create_model(name, k=3)
    assert model(torch.randn(5, 4)).shape == (5, 3)
    assert model.slimtorch_spec == {"name": name, "kwargs": {"k": 3}}
    with pytest.raises(ValueError, match="already registered"):
        register_model("lenet5")(lambda: Tiny(1))
