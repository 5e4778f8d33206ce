"""Per-operator ONNX Runtime profiles: categories add up, depthwise convs are tagged, INT8 runs integer kernels."""

from __future__ import annotations

import os

import pytest
import torch

from slimtorch.deploy import to_int8
from slimtorch.export.onnx import export_onnx
from slimtorch.measure.ort_profile import CATEGORIES, parse_trace, profile_onnx
from tests.deploy.int8_models import conv_net

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The tiny conv net (with a depthwise conv) as fp32 ONNX and as slimtorch's static INT8 file."""
    d = tmp_path_factory.mktemp("profile")
    model = conv_net()
    x = torch.rand(32, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    export_onnx(model, x[:4], d / "fp32.onnx", verbose=False)
    q = to_int8(model, {"max_float_layers": 0}, x, out_dir=d / "int8")
    return d / "fp32.onnx", q.path, x[:2]


def _check_sums(p: dict) -> None:
    cats = p["categories"]
    assert list(cats) == list(CATEGORIES)
    assert sum(c["ms"] for c in cats.values()) == pytest.approx(p["total_ms"], rel=1e-9)
    assert sum(c["pct"] for c in cats.values()) == pytest.approx(100.0, abs=1e-6)
    assert sum(o["ms"] for o in p["ops"].values()) == pytest.approx(p["kernel_ms"], rel=1e-9)
    assert sum(o["nodes"] for o in p["ops"].values()) == sum(c["nodes"] for c in cats.values())


def test_fp32_profile_adds_up_and_tags_the_depthwise_conv(models):
    fp32, _, x = models
    p = profile_onnx(fp32, (x,), runs=4, warmup=1)
    _check_sums(p)
    assert p["runs"] == 4 and p["inputs"] == {"input": [2, 3, 12, 12]}
    assert p["categories"]["depthwise_float"]["nodes"] == 1  # conv_net has one depthwise conv
    assert p["categories"]["float_compute"]["nodes"] >= 2  # conv1, pw (head: Gemm)
    assert p["categories"]["integer_kernels"]["ms"] == 0 and p["categories"]["quantize_dequantize"]["ms"] == 0


def test_int8_profile_shows_integer_kernels_and_quantize_ops(models):
    _, int8, x = models
    p = profile_onnx(int8, x.numpy(), runs=4, warmup=1)
    _check_sums(p)
    cats = p["categories"]
    assert cats["integer_kernels"]["ms"] > 0 and cats["integer_kernels"]["nodes"] >= 2
    assert cats["depthwise_int8"]["nodes"] == 1 and "QLinearConv (depthwise)" in p["ops"]
    assert cats["quantize_dequantize"]["nodes"] >= 2  # the input's QuantizeLinear, the output's DequantizeLinear
    assert cats["depthwise_float"]["nodes"] == 0


def test_profile_leaves_no_files_and_no_profiling_on(models, tmp_path, monkeypatch):
    fp32, _, x = models
    monkeypatch.chdir(tmp_path)
    before = set(os.listdir(tmp_path))
    profile_onnx(fp32, (x,), runs=1, warmup=0)
    assert set(os.listdir(tmp_path)) == before
    from slimtorch.export.onnx import session_options

    assert session_options().enable_profiling is False


def test_parse_trace_drops_warmup_runs_and_counts_outside_kernels():
    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(name, op, ts, dur):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [
        run(0, 1000),
        node("a", "Conv", 10, 900),  # warm-up
        run(2000, 100),
        node("a", "Conv", 2010, 50),
        node("q", "QuantizeLinear", 2070, 20),
        run(3000, 100),
        node("a", "Conv", 3010, 30),
        node("q", "QuantizeLinear", 3050, 20),
    ]
    p = parse_trace(events, warmup=1, depthwise={"a"})
    assert p["runs"] == 2 and p["total_ms"] == pytest.approx(0.1)
    assert p["categories"]["depthwise_float"]["ms"] == pytest.approx(0.04)
    assert p["categories"]["quantize_dequantize"]["ms"] == pytest.approx(0.02)
    assert p["categories"]["between_kernels"]["ms"] == pytest.approx(0.04)
    assert p["ops"]["Conv (depthwise)"]["nodes"] == 1
    with pytest.raises(ValueError, match="warm-up"):
        parse_trace(events, warmup=3)


def test_amdahl_bound_from_category_shares():
    import math

    from slimtorch.measure.ort_profile import amdahl

    p = {"total_ms": 10.0, "categories": {"integer_kernels": {"ms": 5.0}, "layout": {"ms": 3.0}, "other": {"ms": 2.0}}}
    assert amdahl(p, {"layout": math.inf}, speedup=1.4) == pytest.approx(1.4 * 10 / 7)
    assert amdahl(p, {"integer_kernels": 2.0}) == pytest.approx(10 / 7.5)
    with pytest.raises(ValueError, match="unknown profile categories"):
        amdahl(p, {"qdq": math.inf})
