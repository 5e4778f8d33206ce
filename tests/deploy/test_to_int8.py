"""INT8 conversion on real runtimes: fidelity, fallback, config errors, the recipe stage."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch.utils.data import TensorDataset

from slimtorch.core.errors import ConfigError
from slimtorch.deploy import BACKENDS, FidelityTarget, Int8Config, to_int8
from tests.deploy.int8_models import MLPUserNet, conv_net

torch.set_num_threads(1)


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 12, 12, generator=g) * 2 - 0.5


def test_static_ort_int8_is_faithful_and_small(tmp_path):
    model = conv_net()
    q = to_int8(model, {"max_float_layers": 0}, TensorDataset(_images(), torch.zeros(64)), out_dir=tmp_path)
    x = _images(32, seed=1)
    with torch.no_grad():
        ref = model(x)
    out = q(x)
    assert out.shape == ref.shape
    cos = torch.nn.functional.cosine_similarity(out, ref, dim=1)
    assert float(cos.mean()) > 0.98
    ops = {n.op_type for n in onnx.load(str(q.path)).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_excluded_layers_stay_float_in_the_onnx_graph(tmp_path):
    cfg = Int8Config(layers={"exclude": ["pw", "head"]}, max_float_layers=0, cle=False)
    q = to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert set(q.float_layers) == {"pw", "head"}
    graph = onnx.load(str(q.path)).graph
    float_weights = {
        n.input[1]
        for n in graph.node
        if n.op_type in ("Conv", "Gemm")
        and n.input[1] in {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    }
    assert len(float_weights) == 2  # exactly the two kept layers read float weights directly


def test_fallback_keeps_layers_float_until_target(tmp_path):
    # an unreachable KL target forces the fallback to spend its whole budget
    cfg = Int8Config(target=FidelityTarget(min_agreement=1.0, max_kl=0.0), max_float_layers=2, cle=False)
    q = to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    units = {u["unit"]: u["layers"] for u in q.info["sensitivity"]}
    assert {"node_conv2d", "node_conv2d_1", "node_conv2d_2", "node_linear"} <= set(units)  # every layer alone
    # and each activation tensor between two layers, with both of them (its producer and its consumer)
    pairs = {frozenset(units[u]) for u in units if u.startswith("tensor ") and len(units[u]) == 2}
    assert pairs == {frozenset({"node_conv2d", "node_conv2d_1"}), frozenset({"node_conv2d_1", "node_conv2d_2"})}
    assert 1 <= len(q.float_layers) <= 2
    assert set(q.float_layers) <= {"conv1", "dw", "pw", "head"}
    steps = q.info["fallback_steps"]
    assert steps and all(s["float_layers"] <= 2 for s in steps)
    # the greedy keeps a unit only when it lowers the score, so the result is the best step tried
    assert q.info["fidelity_checked"]["mean_kl"] <= min(s["metrics"]["mean_kl"] for s in steps) + 1e-12


def test_fallback_regions_off_ranks_single_layers_only(tmp_path):
    cfg = Int8Config(
        target=FidelityTarget(min_agreement=1.0, max_kl=0.0), max_float_layers=1, cle=False, fallback_regions=False
    )
    q = to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert all(len(u["layers"]) == 1 and not u["unit"].startswith("tensor ") for u in q.info["sensitivity"])
    assert len(q.info["sensitivity"]) == 4 and len(q.float_layers) <= 1


def test_float_kept_layers_drop_bias_correction(tmp_path):
    """Bias correction offsets int8 weight rounding: a layer left in float must keep its exact bias."""
    from onnx import numpy_helper

    from slimtorch.deploy.data import input_batches
    from slimtorch.deploy.ort import exact_float, prepare_float

    model, x = conv_net(), _images()
    cfg = Int8Config(layers={"exclude": ["dw"]}, max_float_layers=0, cle=False, bias_correction=True)
    q = to_int8(model, cfg, x, out_dir=tmp_path)
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(q.path)).graph.initializer}
    dw_bias = [n.input[2] for n in onnx.load(str(q.path)).graph.node if n.name == "node_conv2d_1"][0]
    exact = exact_float(model, cfg).dw.bias.detach().numpy()
    corrected = prepare_float(model, cfg, input_batches(x, 1, cfg.calib_batch_size, cfg.calib_batches))[0].dw.bias
    assert abs(corrected.detach().numpy() - exact).max() > 1e-4  # bias correction did move it
    assert inits[dw_bias] == pytest.approx(exact, abs=1e-6)
    assert q.info["float_layers_exact"] == ["dw"]


def test_dynamic_ort_int8_for_mlp(tmp_path):
    torch.manual_seed(0)
    model = MLPUserNet().eval()
    x = torch.randn(64, 32)
    q = to_int8(model, Int8Config(mode="dynamic", target=FidelityTarget(min_cosine=0.99)), x, out_dir=tmp_path)
    ops = {n.op_type for n in onnx.load(str(q.path)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(q(x), model(x), dim=1)
    assert float(cos.mean()) > 0.99


def test_empty_calibration_loader_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="empty"):
        to_int8(
            conv_net(),
            calib_data=torch.utils.data.DataLoader(TensorDataset(torch.empty(0, 3, 12, 12))),
            out_dir=tmp_path,
        )


def test_backend_registry_and_errors():
    assert {"onnxruntime", "torchao", "torch_fx"} <= set(BACKENDS.names())
    with pytest.raises(ConfigError, match="no static mode"):
        to_int8(conv_net(), {"backend": "torchao", "mode": "static"}, _images())
    with pytest.raises(ConfigError, match="unknown int8 backend"):
        to_int8(conv_net(), {"backend": "tensorrt"}, _images())
    with pytest.raises(ConfigError, match="calibration"):
        Int8Config.from_dict({"calibration": "kmeans"})


def test_config_round_trip():
    cfg = Int8Config(mode="dynamic", layers={"exclude": ["fc*"]}, target=FidelityTarget(min_cosine=0.998))
    assert Int8Config.from_dict(cfg.to_dict()) == cfg


def test_torch_backends_run(tmp_path):
    torch.manual_seed(0)
    model, x = MLPUserNet().eval(), torch.randn(32, 32)
    for name in ("torchao", "torch_fx"):
        q = to_int8(model, Int8Config(mode="dynamic", backend=name), x, out_dir=tmp_path)
        assert q.backend == name and q(x).shape == (32, 4)
        assert q.info["fidelity_checked"]["cosine_mean"] > 0.98


def _ranges(out_dir):
    from onnxruntime.quantization.calibrate import load_tensors_data

    data = load_tensors_data(next(out_dir.rglob("calibration_ranges.json")))
    return {k: (float(v.range_value[0].item()), float(v.range_value[1].item())) for k, v in data.data.items()}


@pytest.mark.parametrize("method", ["percentile", "entropy", "minmax", "mse"])
def test_calibration_with_a_ragged_last_batch(tmp_path, method):
    # 20 examples in batches of 16: ORT's histogram collector cannot stack a batch of 4 with ones of 16
    cfg = Int8Config(calibration=method, calib_batch_size=16, max_float_layers=0)
    q = to_int8(conv_net(), cfg, _images(20), out_dir=tmp_path)
    assert q(_images(3, seed=2)).shape == (3, conv_net()(_images(3)).shape[1])


def test_calibration_methods_choose_different_ranges(tmp_path):
    """ORT's own quantize_static runs 'entropy' with 128/128 bins, i.e. as MinMax: ours must clip outliers."""
    x = _images(64)
    x[0, :, 0, 0] = 40.0  # one outlier pixel: MinMax keeps it in range, entropy and percentile clip it
    got = {}
    for method in ("minmax", "entropy", "percentile", "mse"):
        cfg = Int8Config(calibration=method, percentile=99.9, max_float_layers=0, cle=False, bias_correction=False)
        to_int8(conv_net(), cfg, x, out_dir=tmp_path / method)
        got[method] = _ranges(tmp_path / method)
    inp = "input"
    assert got["minmax"][inp][1] == pytest.approx(40.0)
    for method in ("entropy", "percentile"):
        assert got[method][inp][1] < 0.5 * got["minmax"][inp][1], method
    assert got["entropy"] != got["percentile"]
    # mse ranges are ours (ORT has none): never wider than min/max, 0 inside (ORT needs it), not entropy's
    assert got["mse"] != got["entropy"] and set(got["mse"]) == set(got["minmax"])
    for name, (lo, hi) in got["mse"].items():
        assert got["minmax"][name][0] - 1e-3 <= lo <= 0.0 <= hi <= got["minmax"][name][1] + 1e-3, name


class TokenUserNet(torch.nn.Module):
    """A user's text model: token embedding (the bulk of the weights), mean pooling, a linear head."""

    def __init__(self, vocab: int = 4000, d: int = 32):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)
        self.proj = torch.nn.Linear(d, d)
        self.input_dtype = torch.long

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.proj(self.embed(ids).mean(1))


@pytest.mark.parametrize("embeddings", [True, False])
def test_dynamic_int8_stores_embedding_tables_as_int8(tmp_path, embeddings):
    from onnx import numpy_helper

    torch.manual_seed(0)
    model = TokenUserNet().eval()
    ids = torch.randint(0, 4000, (64, 12))
    cfg = Int8Config(mode="dynamic", quantize_embeddings=embeddings, target=FidelityTarget(min_cosine=0.99))
    q = to_int8(model, cfg, ids, out_dir=tmp_path)
    table = max((numpy_helper.to_array(t) for t in onnx.load(str(q.path)).graph.initializer), key=lambda a: a.size)
    assert table.size == 4000 * 32
    assert (table.dtype.itemsize == 1) == embeddings
    fp32_bytes = sum(p.numel() * 4 for p in model.parameters())
    assert (q.size_bytes < 0.3 * fp32_bytes) == embeddings
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(q(ids), model(ids), dim=1)
    assert float(cos.mean()) > 0.99


def _float_weight_nodes(path) -> set[str]:
    """Conv / Gemm nodes that read a float initializer as their weight: the layers left in float."""
    graph = onnx.load(str(path)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    return {n.name for n in graph.node if n.op_type in ("Conv", "Gemm") and n.input[1] in floats}


def test_include_narrows_what_ort_quantizes(tmp_path):
    cfg = Int8Config(layers={"include": ["conv1", "dw"]}, max_float_layers=0, cle=False)
    q = to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert set(q.float_layers) == {"pw", "head"}  # the layers outside include stay float
    assert len(_float_weight_nodes(q.path)) == 2 and q.info["quantized_layers"] == 2


def test_an_onnx_node_name_selects_a_layer_on_onnx_runtime(tmp_path):
    cfg = Int8Config(layers={"exclude": ["node_linear"]}, max_float_layers=0, cle=False)  # the head's node
    q = to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert q.float_layers == ["head"] and _float_weight_nodes(q.path) == {"node_linear"}


@pytest.mark.parametrize("field", ["include", "exclude"])
def test_an_ort_pattern_matching_no_module_nor_node_is_an_error_naming_it(tmp_path, field):
    cfg = Int8Config(layers={field: ["haed"]}, max_float_layers=0, cle=False)
    with pytest.raises(ConfigError) as exc:
        to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert exc.value.field == f"layers.{field}" and "'haed'" in str(exc.value)
    assert "head" in str(exc.value)  # real names to pick from


def test_a_selection_leaving_nothing_to_quantize_is_an_error(tmp_path):
    cfg = Int8Config(layers={"exclude": ["*"]}, max_float_layers=0, cle=False)
    with pytest.raises(ConfigError, match="selects no layer") as exc:
        to_int8(conv_net(), cfg, _images(), out_dir=tmp_path)
    assert exc.value.field == "layers"


def _torch_model(q) -> torch.nn.Module:
    """The module a torch backend's Int8Model runs (its runner's closure holds it)."""
    import inspect

    found = inspect.getclosurevars(inspect.unwrap(q.runner)).nonlocals["model"]
    assert isinstance(found, torch.nn.Module)
    return found


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_torch_fx_leaves_the_excluded_layers_float(tmp_path, mode):
    torch.manual_seed(0)
    model = conv_net() if mode == "static" else MLPUserNet().eval()
    x = _images() if mode == "static" else torch.randn(32, 32)
    layer = "pw" if mode == "static" else "fc2"
    base = to_int8(model, {"backend": "torch_fx", "mode": mode}, x, out_dir=tmp_path / "all")
    q = to_int8(model, {"backend": "torch_fx", "mode": mode, "layers": {"exclude": [layer]}}, x, out_dir=tmp_path)
    assert q.float_layers == [layer] and base.float_layers == []

    def quantized(q) -> set[str]:
        mods = _torch_model(q).named_modules()
        return {
            n
            for n, m in mods
            if n and "_packed_params" not in n and type(m).__module__.startswith("torch.ao.nn.quantized")
        }

    assert layer in quantized(base) and quantized(q) == quantized(base) - {layer}  # the others are int8
    modules = dict(_torch_model(q).named_modules())
    assert type(modules[layer]).__module__.startswith("torch.nn.modules")
    with pytest.raises(ConfigError) as exc:
        to_int8(model, {"backend": "torch_fx", "mode": mode, "layers": {"exclude": ["nope"]}}, x)
    assert exc.value.field == "layers.exclude" and "'nope'" in str(exc.value)


def test_torchao_include_narrows_the_quantized_linears(tmp_path):
    torch.manual_seed(0)
    model, x = MLPUserNet().eval(), torch.randn(32, 32)
    q = to_int8(model, {"backend": "torchao", "layers": {"include": ["fc1"]}}, x, out_dir=tmp_path)
    assert q.float_layers == ["fc2", "fc3"]
    mods = _torch_model(q).named_modules()
    weights = {n: type(m.weight.data).__name__ for n, m in mods if isinstance(m, torch.nn.Linear)}
    assert weights["fc2"] == weights["fc3"] == "Tensor" and weights["fc1"] != "Tensor", weights
    with pytest.raises(ConfigError) as exc:
        to_int8(model, {"backend": "torchao", "layers": {"include": ["fc9"]}}, x)
    assert exc.value.field == "layers.include" and "'fc9'" in str(exc.value)


def test_an_excluded_gemm_stays_float_in_dynamic_mode(tmp_path):
    """ORT's dynamic quantizer renames each Gemm "<name>_MatMul" before it reads nodes_to_exclude."""
    torch.manual_seed(0)
    cfg = {"mode": "dynamic", "layers": {"exclude": ["fc2"]}, "max_float_layers": 0, "float_weights_int8": False}
    q = to_int8(MLPUserNet().eval(), cfg, torch.randn(32, 32), out_dir=tmp_path)
    graph = onnx.load(str(q.path)).graph
    floats = {i.name for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    float_matmuls = [n.input[1] for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in floats]
    assert q.float_layers == ["fc2"] and len(float_matmuls) == 1 and float_matmuls[0].startswith("fc2.")
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 2  # fc1 and fc3 are int8
