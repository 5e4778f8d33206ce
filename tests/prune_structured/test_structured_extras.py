"""BERT heads/FFN pruning, the recipe stage, network-slimming penalty, iterative fine-tuning."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from slimtorch.models import create_model
from slimtorch.pipeline.context import Context
from slimtorch.prune.structured import BNL1Callback, StructuredConfig, bn_l1_loss, prune_channels, prune_finetune
from slimtorch.prune.structured.finetune import step_ratios
from slimtorch.prune.structured.stage import PruneChannelsStageConfig, prune_channels_stage
from slimtorch.train import TrainConfig, fit

torch.set_num_threads(1)


def _tiny_bert():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=16,
    )
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def _tokens():
    return torch.randint(1, 50, (2, 10), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("importance", ["l2", "activation"])
def test_bert_zero_heads_and_neurons_are_removed_exactly(importance):
    model = _tiny_bert()
    ids = _tokens()
    with torch.no_grad():
        for layer in model.encoder.layer:
            att, d = layer.attention.self, layer.attention.self.attention_head_size
            for lin in (att.query, att.key, att.value):  # head 1 is all zeros
                lin.weight[d : 2 * d] = 0
                lin.bias[d : 2 * d] = 0
            layer.attention.output.dense.weight[:, d : 2 * d] = 0
            layer.intermediate.dense.weight[:16] = 0  # 16 dead FFN neurons
            layer.intermediate.dense.bias[:16] = 0
            layer.output.dense.weight[:, :16] = 0
        ref = model(ids).last_hidden_state
    model = prune_channels(model, StructuredConfig(ratio=0.25, importance=importance), ids)
    for layer in model.encoder.layer:
        assert layer.attention.self.num_attention_heads == 3
        assert layer.attention.self.all_head_size == 24 and layer.attention.self.query.out_features == 24
        assert layer.intermediate.dense.out_features == 48 and layer.output.dense.in_features == 48
    with torch.no_grad():
        torch.testing.assert_close(model(ids).last_hidden_state, ref, atol=1e-5, rtol=1e-5)


def test_bert_heads_ratio_and_round_to():
    model = prune_channels(_tiny_bert(), StructuredConfig(ratio=0.3, heads_ratio=0.5, round_to=8), _tokens())
    layer = model.encoder.layer[0]
    assert layer.attention.self.num_attention_heads == 2
    assert layer.intermediate.dense.out_features % 8 == 0 and layer.intermediate.dense.out_features < 64
    assert model(_tokens()).last_hidden_state.shape == (2, 10, 32)


def _mnist_like(n=64):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.rand(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))


def test_stage_prunes_finetunes_with_kd_and_records(tmp_path):
    model = create_model("lenet5")
    data = _mnist_like()
    ctx = Context(
        model=model,
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=torch.rand(2, 1, 28, 28),
        reference=create_model("lenet5").eval(),
        verbose=False,
        stage_index=1,
        stage_name="prune_channels",
    )
    cfg = PruneChannelsStageConfig.from_dict(
        {
            "prune": {"ratio": 0.5, "round_to": 2},
            "steps": 2,
            "finetune": {"epochs": 1, "batch_size": 32},
            "distill": {"temperature": 2.0, "alpha": 0.5},
        }
    )
    prune_channels_stage(ctx, cfg)
    info = ctx.info["prune_channels"]
    # two rounds of 25% then 33% (of what is left), each rounded up to a multiple of 2
    assert ctx.model.conv1.out_channels == 12 and ctx.model.fc1.out_features == 252
    assert info["macs_after"] < info["macs_before"] / 2 and len(info["rounds"]) == 2
    assert 0.0 <= info["accuracy_after"] <= 1.0


def test_stage_config_rejects_unknown_fields():
    with pytest.raises(ValueError, match="ratioo"):
        PruneChannelsStageConfig.from_dict({"prune": {"ratioo": 0.5}})


def test_step_ratios_compound_to_target():
    rs = step_ratios(0.5, 3)
    kept = 1.0
    for r in rs:
        kept *= 1 - r
    assert kept == pytest.approx(0.5)


def test_bn_l1_penalty_shrinks_bn_scales():
    torch.manual_seed(0)
    model = create_model("resnet_cifar", depth=8, width=4)
    data = TensorDataset(torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,)))
    cfg = TrainConfig(epochs=2, batch_size=16, optimizer={"lr": 0.1})
    fit(model, data, cfg, loss_fn=bn_l1_loss(penalty=0.5), callbacks=[BNL1Callback(penalty=0.5)], verbose=False)
    gammas = torch.cat([m.weight.detach().abs() for m in model.modules() if isinstance(m, nn.BatchNorm2d)])
    assert float(gammas.mean()) < 0.9  # initialised at 1.0


def test_prune_finetune_plain_training_keeps_model_usable():
    model = create_model("lenet300_100")
    log: list = []
    model = prune_finetune(
        model,
        StructuredConfig(ratio=0.5),
        torch.rand(2, 1, 28, 28),
        _mnist_like(),
        TrainConfig(epochs=1, batch_size=32),
        steps=1,
        eval_data=_mnist_like(),
        verbose=False,
        log=log,
    )
    assert model.fc1.out_features == 150 and model.fc2.out_features == 50
    assert "accuracy" in log[0]


def test_compensation_folds_removed_constant_channels_into_bias():
    """A channel that is constant on the data is removed without changing the outputs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 8, 1), nn.Flatten(), nn.Linear(8 * 16, 4)).eval()
    with torch.no_grad():
        model[0].weight[:4] = 0  # channels 0-3 output relu(bias): constant
        model[0].bias[:4] = torch.tensor([0.02, 0.04, 0.06, 0.08])
        model[0].weight[4:] *= 5  # the varying channels clearly rank higher
    x = torch.randn(8, 3, 4, 4)
    ref = model(x)
    cfg = StructuredConfig(ratio=0.5, importance="l2", compensate=True, per_layer={"2": 0.0}, ignore_classifier=True)
    pruned = prune_channels(model, cfg, x, data=TensorDataset(x, torch.zeros(8)))
    assert pruned[0].out_channels == 4 and pruned[2].in_channels == 4
    torch.testing.assert_close(pruned(x), ref, atol=1e-5, rtol=1e-5)
