"""The ``int8`` recipe stage records the artifact, fidelity and latency."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from slimtorch.deploy.stage import Int8StageConfig, int8_stage
from slimtorch.pipeline.context import Context
from tests.deploy.int8_models import conv_net

torch.set_num_threads(1)


def test_int8_stage_sets_artifact_and_info(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(48, 3, 12, 12, generator=g)
    data = TensorDataset(x, torch.randint(0, 5, (48,), generator=g))
    model = conv_net()
    ctx = Context(
        model=model,
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=x[:1],
        calib_data=data,
        reference=model,
        stage_index=1,
        stage_name="int8",
    )
    int8_stage(ctx, Int8StageConfig(max_float_layers=0, timing_rounds=2))
    path = ctx.artifacts["int8"]
    assert path.suffix == ".onnx" and path.exists()
    info = ctx.info["int8"]
    assert 0.0 <= info["fidelity_test"]["top1_agreement"] <= 1.0
    assert info["latency_ms_batch1"]["int8"] > 0 and "accuracy_int8" in info
    assert set(info["latency_ms_batch1"]) == {"ort_fp32", "torch_fp32", "int8"} and info["fp32_onnx_bytes"] > 0
    assert {"speedup_vs_ort_fp32", "speedup_vs_fastest_fp32"} <= set(info) and "int8_model" not in info
    assert ctx.model is model  # the float model stays; the INT8 file is the deployment artifact
    assert ctx.results["int8"].int8_model.path == path  # the converted model, in memory only


def _data(n: int):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 12, 12, generator=g)
    return x, TensorDataset(x, torch.randint(0, 5, (n,), generator=g))


def _stage_ctx(x, data, tmp_path, **kw) -> Context:
    model = conv_net()
    return Context(
        model=model,
        train_data=data,
        out_dir=tmp_path,
        example_input=x[:1],
        reference=model,
        stage_index=1,
        stage_name="int8",
        **kw,
    )


def _spy_to_int8(monkeypatch) -> dict:
    """The stage's ``to_int8``, recording the calibration and check data it is given."""
    from slimtorch.deploy import stage

    seen = {}
    real = stage.to_int8

    def spy(model, cfg, calib, check_data=None, out_dir=None):
        seen["calib"], seen["check"] = calib, check_data
        return real(model, cfg, calib, check_data=check_data, out_dir=out_dir)

    monkeypatch.setattr(stage, "to_int8", spy)
    return seen


def test_int8_stage_checks_its_fallback_on_a_selection_split_not_the_test_data(tmp_path, monkeypatch):
    x, data = _data(40)
    test = TensorDataset(x[:8] + 1.0, torch.zeros(8, dtype=torch.long))
    seen = _spy_to_int8(monkeypatch)
    ctx = _stage_ctx(x, data, tmp_path, test_data=test, calib_data=data)
    int8_stage(ctx, Int8StageConfig(max_float_layers=1, timing_rounds=2, calib_examples=24, selection_examples=10))
    assert list(seen["calib"].indices) == list(range(24)) and list(seen["check"].indices) == list(range(24, 34))
    assert ctx.info["int8"]["fallback_checked_on"].startswith("selection: 10 examples")


def test_int8_stage_without_baseline_times_the_int8_runtime_alone(tmp_path, monkeypatch):
    """``baseline: false`` (``slimtorch auto``): no fp32 export or timing; ``selection_from: validation``."""
    import pytest

    from slimtorch.core import ConfigError
    from slimtorch.deploy import stage

    x, data = _data(40)
    val = TensorDataset(x[:12] + 0.5, torch.zeros(12, dtype=torch.long))
    exported = []
    monkeypatch.setattr(stage, "export_onnx", lambda *a, **k: exported.append(a))
    seen = _spy_to_int8(monkeypatch)
    ctx = _stage_ctx(x, data, tmp_path, test_data=None, validation_data=val)
    cfg = dict(max_float_layers=1, timing_rounds=2, selection_examples=8, timing_batch=1)
    int8_stage(ctx, Int8StageConfig(**cfg, baseline=False, selection_from="validation"))
    info, res = ctx.info["int8"], ctx.results["int8"]
    assert exported == [] and not (tmp_path / "01_int8" / "fp32.onnx").exists()
    assert info["latency_ms"] == {"b1": {"int8": info["latency_ms_batch1"]["int8"]}}  # batch 1 only
    assert not {"speedup_vs_ort_fp32", "speedup_vs_fastest_fp32", "fp32_onnx_bytes"} & set(info)
    assert seen["check"].dataset is val and list(seen["check"].indices) == list(range(8))
    assert info["fallback_checked_on"] == "selection: the first 8 examples of the validation split"
    assert res.deployed.latency_b1_ms == info["latency_ms_batch1"]["int8"]
    assert res.int8_model(x[:2]).shape == (2, 5)  # the runtime itself, for code running the stage
    ctx.validation_data = None
    with pytest.raises(ConfigError, match="validation_size") as exc:
        int8_stage(ctx, Int8StageConfig(**cfg, selection_from="validation"))
    assert exc.value.field == "selection_from"
