"""Weight-only quantizers (RTN, GPTQ, AWQ, HQQ): grids, files, and that each method beats its baseline."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from slimtorch.core.errors import ConfigError, FormatError
from slimtorch.quantize.awq import quantize_awq
from slimtorch.quantize.gptq import gptq_weight, quantize_gptq
from slimtorch.quantize.hqq import HQQConfig, hqq_weight, quantize_hqq
from slimtorch.quantize.qlinear import QuantLinear, load_quantized_lm, pack_codes, save_quantized_lm, unpack_codes
from slimtorch.quantize.rtn import quantize_rtn
from slimtorch.quantize.wgrid import GridConfig, group_bounds, rtn_weight
from tests.llm_fixtures import tiny_ids, tiny_llama


@settings(max_examples=30, deadline=None)
@given(bits=st.integers(2, 8), n=st.integers(1, 300), seed=st.integers(0, 1000))
def test_pack_unpack_round_trip(bits, n, seed):
    codes = torch.randint(0, 2**bits, (n,), generator=torch.Generator().manual_seed(seed)).to(torch.uint8)
    packed = pack_codes(codes, bits)
    assert packed.numel() == (n * bits + 7) // 8
    assert torch.equal(unpack_codes(packed, bits, n), codes)


def test_partial_last_group_is_its_own_group():
    assert group_bounds(576, 128) == [(0, 128), (128, 256), (256, 384), (384, 512), (512, 576)]
    w = torch.randn(8, 80)
    w[:, 64:] *= 100  # a last group on a very different scale must not borrow the others' range
    qw = rtn_weight(w, GridConfig(bits=4, group_size=64, mse_search=False))
    assert qw.scales.shape == (8, 2)
    err = (qw.dequantize() - w).abs()
    assert (err[:, :64] <= qw.scales[:, :1] / 2 + 1e-6).all()
    assert (err[:, 64:] <= qw.scales[:, 1:] / 2 + 1e-4).all()


@pytest.mark.parametrize("symmetric", [False, True])
def test_rtn_codes_within_range_and_symmetric_zero(symmetric):
    qw = rtn_weight(torch.randn(16, 64), GridConfig(bits=3, group_size=32, symmetric=symmetric))
    assert int(qw.codes.max()) <= 7
    if symmetric:
        assert torch.all(qw.zeros == 4)


def _output_err(w, q, H):
    d = w - q
    return float(torch.trace(d @ H @ d.T))


def test_gptq_beats_rtn_on_correlated_inputs():
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(64, 64, generator=g)
    x = torch.randn(2048, 64, generator=g) @ mix  # correlated input channels, as in real activations
    H = x.T @ x / x.shape[0]
    w = torch.randn(32, 64, generator=g) * 0.05
    grid = GridConfig(bits=3, group_size=32)
    e_rtn = _output_err(w, rtn_weight(w, grid).dequantize(), H)
    e_gptq = _output_err(w, gptq_weight(w, H, grid).dequantize(), H)
    assert e_gptq < 0.7 * e_rtn


def test_hqq_lowers_its_objective_and_rejects_symmetric():
    w = torch.randn(64, 128) * 0.02
    w[0, :4] = 0.5  # outliers: the case a p < 1 norm is for
    cfg = HQQConfig(grid=GridConfig(bits=3, group_size=64))
    lp = lambda q: float((w - q).abs().pow(0.7).sum())  # noqa: E731
    assert lp(hqq_weight(w, cfg).dequantize()) < lp(rtn_weight(w, cfg.grid.replace(mse_search=False)).dequantize())
    with pytest.raises(ConfigError, match="asymmetric"):
        HQQConfig.from_dict({"grid": {"symmetric": True}})


@pytest.mark.parametrize("method", ["rtn", "hqq", "gptq", "awq"])
def test_methods_on_a_tiny_llama(method, tmp_path):
    model = tiny_llama()
    ids = tiny_ids(8, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = {"grid": {"bits": 4, "group_size": 32}}
    if method == "rtn":
        q = quantize_rtn(model, cfg)
    elif method == "hqq":
        q = quantize_hqq(model, cfg)
    elif method == "gptq":
        q = quantize_gptq(model, cfg, ids)
    else:
        q = quantize_awq(model, cfg, ids)
    # the input model is untouched (transforms return a new model unless inplace)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    quant = [n for n, m in q.named_modules() if isinstance(m, QuantLinear)]
    assert len(quant) == 2 * 7 and "lm_head" not in quant
    with torch.no_grad():
        ref, out = model(ids).logits, q(ids).logits
    cos = nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0)
    assert cos > 0.95
    # the file holds integers and reloads to the same outputs
    folder = save_quantized_lm(q, tmp_path / "m")
    again = load_quantized_lm(folder)
    with torch.no_grad():
        assert torch.equal(again(ids).logits, out)
    with pytest.raises(FileExistsError):
        save_quantized_lm(q, folder)


def test_int4_file_is_smaller_than_float(tmp_path):
    model = tiny_llama(hidden=128, intermediate=256)
    q = quantize_rtn(model, {"grid": {"bits": 4, "group_size": 64}, "layers": {"exclude": ["lm_head"]}})
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    fq = save_quantized_lm(q, tmp_path / "q")
    from safetensors.torch import save_file

    dense = sum(m.weight.numel() for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head")
    packed = sum(m.codes.numel() for m in q.modules() if isinstance(m, QuantLinear))
    assert packed == dense
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"},
        str(tmp_path / "f.safetensors"),
    )
    assert size(fq) < (tmp_path / "f.safetensors").stat().st_size


def test_gptq_improves_on_rtn_end_to_end():
    model = tiny_llama(seed=1)
    ids = tiny_ids(16, 32, seed=1)
    cfg = {"grid": {"bits": 3, "group_size": 32}}
    with torch.no_grad():
        ref = model(ids).logits
        e = {
            name: float((fn().__call__(ids).logits - ref).pow(2).mean())
            for name, fn in {
                "rtn": lambda: quantize_rtn(model, cfg),
                "gptq": lambda: quantize_gptq(model, cfg, ids),
            }.items()
        }
    assert e["gptq"] < e["rtn"]


def test_bad_configs_name_the_field():
    model = tiny_llama()
    with pytest.raises(ConfigError, match="grid.bits"):
        quantize_rtn(model, {"grid": {"bits": 1}})
    with pytest.raises(ConfigError, match="matches no"):
        quantize_rtn(model, {"layers": {"include": ["*nonexistent*"]}})
    with pytest.raises(ConfigError, match="selects no nn.Linear"):
        quantize_rtn(model, {"layers": {"exclude": ["*"]}})


def test_load_rejects_a_folder_without_metadata(tmp_path):
    with pytest.raises(FormatError, match="slimtorch_quant.json"):
        load_quantized_lm(tmp_path)


def test_smoothquant_w8a8_stays_close_to_float():
    from slimtorch.quantize.w8a8 import W8A8Linear, quantize_w8a8

    model = tiny_llama(seed=2)
    ids = tiny_ids(8, 32, seed=2)
    q = quantize_w8a8(model, {"alpha": 0.5}, ids)
    assert sum(isinstance(m, W8A8Linear) for m in q.modules()) == 14
    with torch.no_grad():
        ref, out = model(ids).logits, q(ids).logits
    assert nn.functional.cosine_similarity(ref.flatten(), out.flatten(), dim=0) > 0.99
    with pytest.raises(ConfigError, match="calibration ids"):
        quantize_w8a8(model, {"alpha": 0.5})


def test_mixed_bits_meet_the_budget_and_spend_bits_where_sensitive():
    from slimtorch.quantize.mixed_lm import MixedBitsConfig, bits_per_weight, choose_bits, layer_sensitivity

    model = tiny_llama(seed=3)
    ids = tiny_ids(8, 32, seed=3)
    cfg = MixedBitsConfig(candidates=[2, 4], avg_bits=4.0, grid={"group_size": 32})
    sens = layer_sensitivity(model, ids, cfg)
    assert len(sens) == 14 and all(s[2] > s[4] for s in sens.values())
    shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in sens}
    bits = choose_bits(sens, shapes, cfg)
    numel = {n: shapes[n][0] * shapes[n][1] for n in bits}
    avg = sum(bits_per_weight(shapes[n], b, 32) * numel[n] for n, b in bits.items()) / sum(numel.values())
    assert avg <= 4.0 and set(bits.values()) == {2, 4}
    # the layers kept at 4 bits are the ones whose 2-bit step costs most error per byte
    cost = {n: (sens[n][2] - sens[n][4]) / numel[n] for n in bits}
    assert min(cost[n] for n in bits if bits[n] == 4) >= max(cost[n] for n in bits if bits[n] == 2)
    q = quantize_gptq(model, {"grid": {"bits": 4, "group_size": 32}, "per_layer_bits": bits}, ids)
    got = {n: m.bits for n, m in q.named_modules() if isinstance(m, QuantLinear)}
    assert got == bits
    with pytest.raises(ConfigError, match="avg_bits"):
        choose_bits(sens, shapes, cfg.replace(avg_bits=2.0))
