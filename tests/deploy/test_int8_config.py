"""One INT8 config class per backend and mode, built from ``backend`` / ``mode`` through one validation path."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from slimtorch.core import ConfigError
from slimtorch.deploy import (
    FidelityTarget,
    Int8Config,
    OrtDynamicInt8Config,
    OrtInt8Config,
    OrtStaticInt8Config,
    TorchaoInt8Config,
    TorchFxInt8Config,
    evaluate_int8,
    to_int8,
)
from slimtorch.deploy.stage import Int8StageConfig
from slimtorch.pipeline import apply_overrides, recipe_from_dict
from tests.deploy.int8_models import MLPUserNet

torch.set_num_threads(1)

BUILDS = [
    ({}, OrtStaticInt8Config, "onnxruntime", "static"),
    ({"mode": "dynamic", "smooth_alpha": 0.5}, OrtDynamicInt8Config, "onnxruntime", "dynamic"),
    ({"backend": "onnxruntime", "mode": "static", "calibration": "mse"}, OrtStaticInt8Config, "onnxruntime", "static"),
    ({"backend": "auto", "mode": "dynamic"}, OrtDynamicInt8Config, "auto", "dynamic"),
    ({"backend": "auto", "layers": {"exclude": ["head"]}}, OrtStaticInt8Config, "auto", "static"),
    ({"backend": "torchao"}, TorchaoInt8Config, "torchao", "dynamic"),  # torchao's only mode is the default
    ({"backend": "torchao", "scheme": "int8_dynamic"}, TorchaoInt8Config, "torchao", "dynamic"),
    ({"backend": "torch_fx"}, TorchFxInt8Config, "torch_fx", "static"),
    ({"backend": "torch_fx", "mode": "dynamic", "threads": 2}, TorchFxInt8Config, "torch_fx", "dynamic"),
]


@pytest.mark.parametrize(
    "data, cls, backend, mode", BUILDS, ids=[f"{b}-{m}-{i}" for i, (_, _, b, m) in enumerate(BUILDS)]
)
def test_every_backend_and_mode_builds_its_class_from_a_dict(data, cls, backend, mode):
    cfg = Int8Config.from_dict(data)
    assert type(cfg) is cls and isinstance(cfg, Int8Config)
    assert (cfg.backend, cfg.mode) == (backend, mode)
    assert Int8Config(**data) == cfg  # the constructor is the same entry point
    assert Int8Config.from_dict(cfg.to_dict()) == cfg  # round trip through a plain dict
    assert cls.from_dict(cfg.to_dict()) == cfg
    stage = Int8StageConfig.from_dict({**data, "test_examples": 7})
    assert isinstance(stage, cls) and isinstance(stage, Int8StageConfig) and stage.test_examples == 7


@pytest.mark.parametrize(
    "data, field, belongs",
    [
        ({"mode": "dynamic", "calibration": "entropy"}, "calibration", "onnxruntime static"),
        ({"mode": "dynamic", "adaround": True}, "adaround", "onnxruntime static"),
        ({"mode": "static", "smooth_alpha": 0.5}, "smooth_alpha", "onnxruntime dynamic"),
        ({"backend": "torchao", "max_float_layers": 2}, "max_float_layers", "onnxruntime"),
        ({"backend": "onnxruntime", "scheme": "int8_dynamic"}, "scheme", "torchao dynamic"),
    ],
)
def test_a_field_of_another_backend_or_mode_is_an_error_naming_it_and_its_owner(data, field, belongs):
    for build in (Int8Config.from_dict, lambda d: Int8Config(**d), lambda d: to_int8(MLPUserNet(), d, None)):
        with pytest.raises(ConfigError) as exc:
            build(data)
        assert exc.value.field == field
        assert f"'{field}'" in str(exc.value) and belongs in str(exc.value)


def test_in_a_recipe_the_error_names_the_stage_field():
    recipe = {
        "name": "t",
        "model": {"name": "lenet300_100"},
        "stages": [{"type": "int8", "mode": "dynamic", "calibration": "minmax"}],
    }
    with pytest.raises(ConfigError) as exc:
        recipe_from_dict(recipe).stage_configs()
    assert exc.value.field == "stages[0].calibration" and "onnxruntime static" in str(exc.value)
    ok = recipe_from_dict(apply_overrides(recipe, ["stages.0.mode=static"])).stage_configs()
    assert isinstance(ok[0][2], OrtStaticInt8Config) and ok[0][2].calibration == "minmax"


@pytest.mark.parametrize(
    "data, field, text",
    [
        ({"backend": "tensorrt"}, "backend", "unknown int8 backend 'tensorrt'"),
        ({"backend": ""}, "backend", "a backend name"),
        ({"backend": "torchao", "mode": "static"}, "mode", "no static mode"),
        ({"mode": "int4"}, "mode", "static or dynamic"),
        ({"calibration": "kmeans"}, "calibration", "minmax"),
        ({"torchao_scheme": "int8_dynamic"}, "torchao_scheme", "now 'scheme'"),
        ({"bogus": 1}, "bogus", "unknown field"),
    ],
)
def test_bad_backend_mode_or_value_names_the_field(data, field, text):
    with pytest.raises(ConfigError, match=text) as exc:
        Int8Config.from_dict(data)
    assert exc.value.field == field


def test_a_concrete_class_refuses_another_mode_and_ort_dispatches_its_modes():
    with pytest.raises(ConfigError) as exc:
        OrtStaticInt8Config(mode="dynamic")
    assert exc.value.field == "mode"
    assert type(OrtInt8Config(mode="dynamic")) is OrtDynamicInt8Config
    with pytest.raises(ConfigError, match="not a OrtInt8Config"):
        OrtInt8Config.from_dict({"backend": "torch_fx"})


def test_from_legacy_reads_a_recorded_single_int8config_dict():
    results = json.loads((Path(__file__).parents[2] / "bench" / "results" / "int8.json").read_text())
    old = results["minilm"]["slimtorch_int8_dynamic"]["config"]
    assert {"calibration", "torchao_scheme", "adaround"} <= set(old)  # a dump of the former 25-field class
    with pytest.raises(ConfigError, match="from_legacy"):
        Int8Config.from_dict(old)
    cfg = Int8Config.from_legacy(old)
    assert type(cfg) is OrtDynamicInt8Config
    assert cfg.smooth_alpha == old["smooth_alpha"] and cfg.target.min_cosine == old["target"]["min_cosine"]
    static = Int8Config.from_legacy({**old, "mode": "static", "percentile": 99.9})
    assert type(static) is OrtStaticInt8Config and static.percentile == 99.9
    tao = Int8Config.from_legacy({**old, "backend": "torchao", "torchao_scheme": "int8_dynamic"})
    assert type(tao) is TorchaoInt8Config and tao.scheme == "int8_dynamic"


def test_from_legacy_maps_keep_float_to_layers_exclude():
    old = {"backend": "onnxruntime", "mode": "static", "keep_float": ["features.0.*", "classifier.1"], "scheme": "x"}
    cfg = Int8Config.from_legacy(old)
    assert cfg.layers.exclude == ["features.0.*", "classifier.1"] and cfg.layers.include is None
    assert Int8Config.from_legacy({**old, "keep_float": []}).layers.exclude == []
    # the former class ignored keep_float on the torch backends; so does the legacy reader
    fx = Int8Config.from_legacy({**old, "backend": "torch_fx"})
    assert type(fx) is TorchFxInt8Config and fx.layers.exclude == []


@pytest.mark.parametrize("build", [Int8Config.from_dict, lambda d: Int8Config(**d), Int8StageConfig.from_dict])
def test_keep_float_is_refused_with_the_layers_form(build):
    with pytest.raises(ConfigError) as exc:
        build({"keep_float": ["head"]})
    assert exc.value.field == "keep_float"
    assert "'keep_float' was replaced by layers: {exclude: [...]}" in str(exc.value) and "['head']" in str(exc.value)


def test_the_old_selection_names_are_refused_on_int8_too():
    with pytest.raises(ConfigError, match=r"'exclude' was replaced by layers: \{exclude"):
        Int8Config.from_dict({"backend": "torch_fx", "exclude": ["fc1"]})


def test_the_former_argument_order_is_refused_with_the_new_one_named():
    model, x = MLPUserNet(), torch.randn(8, 32)
    for data in (x, TensorDataset(x), [x]):
        with pytest.raises(ConfigError, match=r"to_int8\(model, config, calib_data\)") as exc:
            to_int8(model, data, {"backend": "torch_fx", "mode": "dynamic"})
        assert exc.value.field == "config"


def test_auto_gives_the_other_backends_the_shared_fields(tmp_path):
    model, x = MLPUserNet().eval(), torch.randn(32, 32)
    target = FidelityTarget(min_agreement=None, max_kl=None, min_cosine=0.9)
    cfg = {"backend": "auto", "mode": "dynamic", "target": target.to_dict(), "layers": {"exclude": ["fc3"]}}
    q = to_int8(model, cfg, x, out_dir=tmp_path)
    tried = q.info.get("auto", {}).get("fidelity", {})
    assert {"onnxruntime", "torchao", "torch_fx"} <= set(tried)  # the torch backends honour the selection too
    assert q(x).shape == (32, 4)


def test_the_temporary_folder_lives_as_long_as_the_model():
    model, x = MLPUserNet().eval(), torch.randn(16, 32)
    q = to_int8(model, {"mode": "dynamic", "max_float_layers": 0}, x)
    folder = q.path.parents[1]
    assert folder.name.startswith("slimtorch_int8_") and q.path.exists()
    q.close()
    assert not folder.exists()
    with to_int8(model, {"mode": "dynamic", "max_float_layers": 0}, x) as q2:
        folder = q2.path.parents[1]
        assert q2(x).shape == (16, 4)
    assert not folder.exists()
    q3 = to_int8(model, {"mode": "dynamic", "max_float_layers": 0}, x)
    folder = q3.path.parents[1]
    del q3
    gc.collect()
    assert not folder.exists()


def test_an_out_dir_is_never_removed(tmp_path):
    q = to_int8(MLPUserNet().eval(), {"mode": "dynamic", "max_float_layers": 0}, torch.randn(16, 32), out_dir=tmp_path)
    q.close()
    assert q.path.exists()


def test_evaluate_int8_agrees_with_a_hand_count():
    g = torch.Generator().manual_seed(0)
    model = MLPUserNet().eval()
    x, y = torch.randn(40, 32, generator=g), torch.randint(0, 4, (40,), generator=g)

    def noisy(inp):  # a stand-in for an INT8 model: the float outputs, perturbed
        with torch.no_grad():
            return model(inp) + 0.3 * torch.randn(inp.shape[0], 4, generator=torch.Generator().manual_seed(1))

    ev = evaluate_int8(noisy, TensorDataset(x, y), model, batch_size=64)
    with torch.no_grad():
        ref, out = model(x), noisy(x)
    assert ev.n == 40
    assert ev.accuracy == pytest.approx(float((out.argmax(1) == y).float().mean()))
    assert ev.accuracy_float == pytest.approx(float((ref.argmax(1) == y).float().mean()))
    assert ev.fidelity["top1_agreement"] == pytest.approx(float((out.argmax(1) == ref.argmax(1)).float().mean()))
    unlabelled = evaluate_int8(noisy, TensorDataset(x, torch.full((40,), -1)), model)
    assert unlabelled.accuracy is None and unlabelled.fidelity is not None
    assert evaluate_int8(noisy, x).fidelity is None  # no reference: nothing to compare with
