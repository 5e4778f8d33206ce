"""The peers' wrappers of bench/llm_peers.py on a tiny random Llama (no real model, no llmcompressor run).

Width 64 with group/block 128 is the small stand-in for SmolLM2's 576 = 4.5 x 128: ORT pads K
to a whole block, hqq groups the flattened weight across rows, and ORT's neural-compressor RTN
config meets an odd number of blocks per column.
"""

from __future__ import annotations

import pytest
import torch

from bench import llm_peers as P

pytest.importorskip("transformers")
pytest.importorskip("onnxruntime.quantization.matmul_nbits_quantizer")
try:
    import hqq.core.quantize  # noqa: F401

    HAS_HQQ = True
except ImportError:
    HAS_HQQ = False
VOCAB = 256


def tiny_llama(seed: int = 0):
    """2 blocks, width 64 (4 heads, 2 KV heads), MLP 128, tied embeddings; float32, eval."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(cfg).float().eval()


def tiny_ids(n: int, length: int) -> torch.Tensor:
    return torch.randint(0, VOCAB, (n, length), generator=torch.Generator().manual_seed(0))


FACT_KEYS = {"peer", "version", "config", "calib_seconds", "peak_rss_mb", "size_bytes", "error", "notes"}


def _snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _changed(model, before) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}


def _decoder_weight_names(model) -> set[str]:
    return {n + ".weight" for n, _ in P.decoder_linears(model)}


def test_decoder_linears_are_the_blocks_linears_not_lm_head():
    model = tiny_llama()
    names = [n for n, _ in P.decoder_linears(model)]
    assert len(names) == 2 * 7
    assert all(n.startswith("model.layers.") for n in names)


def test_ort_weight_on_a_partial_block_is_ort_grid():
    # in=96 with block 64: K padded to 128 by ORT itself; each (column, block) holds <= 16 levels.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(40, 96, generator=g)
    deq, size, attrs = P.ort_quantize_weight(w, "default_asym", block_size=64)
    assert deq.shape == w.shape and attrs["K"] == 96 and attrs["N"] == 40 and attrs["block_size"] == 64
    for s, e in ((0, 64), (64, 96)):
        block = deq[:, s:e]
        assert max(len(torch.unique(row)) for row in block) <= 16
        lo = torch.minimum(w[:, s:e].min(1).values, torch.zeros(40))
        hi = torch.maximum(w[:, s:e].max(1).values, torch.zeros(40))
        step = (hi - lo) / 15
        assert ((deq[:, s:e] - w[:, s:e]).abs() <= step[:, None] * 0.5 + 1e-5).all()
    # packed B (40 x 2 blocks x 32 bytes) + fp32 scales (40 x 2) + packed zero points (40 x 1)
    assert size == 40 * 2 * 32 + 40 * 2 * 4 + 40


@pytest.mark.parametrize("config", ["default_asym", "default_sym", "hqq"])
def test_peer_ort_replaces_every_decoder_linear_in_place(config):
    model = tiny_llama()
    before = _snapshot(model)
    out, facts = P.peer_ort(model, config)
    assert out is model and FACT_KEYS <= set(facts)
    assert facts["error"] is None, facts["error"]
    assert facts["peer"] == "onnxruntime" and facts["version"] and facts["size_bytes"] > 0
    assert facts["layers"] == 14 and facts["calib_seconds"] >= 0
    assert _changed(model, before) == _decoder_weight_names(model)
    assert any("padded" in n for n in facts["notes"])  # K=64 < block 128
    for name, lin in P.decoder_linears(model):  # 4-bit: at most 16 levels per column and block
        assert len(torch.unique(lin.weight[0])) <= 16, name
        rel = (lin.weight - before[name + ".weight"]).norm() / before[name + ".weight"].norm()
        assert 0 < rel < 0.3, name


def test_peer_ort_rtn_crash_is_recorded_and_model_untouched():
    # 64 columns / block 128 = one block per column (odd): ORT's RTN config cannot pack its zero points.
    model = tiny_llama()
    before = _snapshot(model)
    out, facts = P.peer_ort(model, "rtn")
    assert out is model
    assert facts["error"] and "reshape" in facts["error"]
    assert _changed(model, before) == set()
    # symmetric (no zero points) takes the same path without the crash
    _, facts = P.peer_ort(model, "rtn_sym")
    assert facts["error"] is None, facts["error"]


@pytest.mark.skipif(not HAS_HQQ, reason="hqq is not installed (pip install hqq==0.2.8.post1 into .venv)")
@pytest.mark.parametrize("config", ["default", "no_round_zero"])
def test_peer_hqq_groups_the_flattened_weight(config):
    model = tiny_llama()
    before = _snapshot(model)
    out, facts = P.peer_hqq(model, config)
    assert out is model and facts["error"] is None, facts.get("error")
    assert facts["version"].startswith("0.2.8") and facts["size_bytes"] > 0
    assert facts["quant_config"]["round_zero"] is (config == "default")
    assert _changed(model, before) == _decoder_weight_names(model)
    assert any("straddle" in n for n in facts["notes"])
    # width 64, group 128: one hqq group = two consecutive rows, so <= 16 levels over each row pair
    w = dict(P.decoder_linears(model))["model.layers.0.self_attn.q_proj"].weight.detach()
    pairs = w.reshape(-1, 128)
    assert max(len(torch.unique(p)) for p in pairs) <= 16
    assert max(len(torch.unique(r)) for r in w) <= 16


def test_llmcompressor_without_its_venv_is_an_error_not_a_crash(tmp_path):
    model = tiny_llama()
    before = _snapshot(model)
    out, facts = P.peer_llmcompressor(model, tiny_ids(2, 16), "gptq_w4g64", hf_dir=tmp_path, venv=tmp_path / "no-venv")
    assert out is model and "setup_llmcompressor.sh" in facts["error"]
    assert _changed(model, before) == set()
    with pytest.raises(ValueError):
        P.peer_llmcompressor(model, tiny_ids(2, 16), "gptq_w3g7")


def test_peer_rows_are_named_as_the_benchmark_expects():
    rows = P.peers()
    assert all(r.startswith("peer_") for r in rows)
    assert all(
        "w4" in r
        for r, (fn, kw, _) in rows.items()
        if fn is not P.peer_llmcompressor or kw["config"].startswith("gptq")
    )
    assert {kw["config"] for fn, kw, _ in rows.values() if fn is P.peer_llmcompressor} == set(P.LLMC_CONFIGS)
