"""ONNX export of decoders: exact integers in MatMulNBits, KV-cache decoding, batches, generation, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from slimtorch.core.errors import ConfigError, FormatError, UnsupportedModelError
from slimtorch.deploy.lm import LMExportConfig, OnnxCausalLM, export_onnx, onnx_size_bytes
from slimtorch.deploy.lm.generate import generate_onnx
from slimtorch.deploy.lm.pack import from_nbits, to_nbits
from slimtorch.quantize.hqq import quantize_hqq
from slimtorch.quantize.qlinear import QuantLinear
from slimtorch.quantize.rtn import quantize_rtn
from slimtorch.quantize.wgrid import GridConfig, rtn_weight
from tests.llm_fixtures import tiny_ids, tiny_llama

EXACT = {"embedding_bits": None, "accuracy_level": 0}


def _export(model, tmp_path, name="m", **cfg):
    return OnnxCausalLM(export_onnx(model, tmp_path / name, {**EXACT, **cfg}), threads=1)


@pytest.mark.parametrize("bits,group", [(4, 32), (8, 32), (4, None), (2, 16), (3, 32)])
def test_nbits_layout_round_trips_codes(bits, group):
    w = torch.randn(24, 80)  # 80 = 2.5 groups of 32: a partial last block
    qw = rtn_weight(w, GridConfig(bits=bits, group_size=group))
    t = to_nbits(qw)
    back = from_nbits(t.B, t.scales, t.zero_points, t.K, t.N, t.bits, t.block_size, t.code_bits, group)
    assert torch.equal(back.codes, qw.codes)
    assert torch.equal(back.scales, qw.scales) and torch.equal(back.zeros, qw.zeros)
    assert t.bits == (4 if bits == 3 else bits)


def test_group_size_that_is_not_a_power_of_two_is_refused():
    qw = rtn_weight(torch.randn(8, 96), GridConfig(bits=4, group_size=48))
    with pytest.raises(UnsupportedModelError, match="powers of two"):
        to_nbits(qw)


def test_float_export_matches_pytorch_and_cache_matches_full_forward(tmp_path):
    model = tiny_llama()
    ids = tiny_ids(2, 12)
    lm = _export(model, tmp_path)
    ref = model(ids).logits.detach()
    assert torch.allclose(lm.logits(ids), ref, atol=1e-4)
    past = lm.empty_past(2)
    logits, past = lm.step(ids[:, :8].numpy(), np.ones((2, 8), np.int64), past)
    assert np.allclose(logits, ref[:, :8].numpy(), atol=1e-4)
    for t in range(8, 12):  # one token at a time through the cache
        logits, past = lm.step(ids[:, t : t + 1].numpy(), np.ones((2, t + 1), np.int64), past)
        assert np.allclose(logits[:, 0], ref[:, t].numpy(), atol=1e-4)


def test_right_padded_batch_rows_match_their_own_runs(tmp_path):
    model = tiny_llama()
    ids = tiny_ids(2, 10, seed=3)
    lm = _export(model, tmp_path)
    prompts = [ids[0, :9].tolist(), ids[1, :4].tolist()]
    together = generate_onnx(lm, prompts, max_new_tokens=6)
    alone = [generate_onnx(lm, [p], max_new_tokens=6).tokens[0] for p in prompts]
    assert together.tokens == alone
    # and greedy decoding agrees with PyTorch's own argmax loop
    seq = torch.tensor([prompts[1]])
    for _ in range(6):
        seq = torch.cat([seq, model(seq).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert seq[0, 4:].tolist() == alone[1]


@pytest.mark.parametrize(
    "grid",
    [
        {"bits": 4, "group_size": 32},
        {"bits": 8, "group_size": 16},
        {"bits": 4, "group_size": None},
        {"bits": 3, "group_size": 32},
    ],
)
def test_quantized_export_carries_exact_integers(tmp_path, grid):
    import onnx
    from onnx import numpy_helper

    model = quantize_rtn(tiny_llama(hidden=48, heads=3, kv_heads=1, intermediate=96), {"grid": grid})
    lm = _export(model, tmp_path)
    ids = tiny_ids(2, 10)
    # accuracy_level 0 computes with the stored weights in float: same logits as the QuantLinear model
    assert torch.allclose(lm.logits(ids), model(ids).logits.detach(), atol=1e-4)
    graph = onnx.load(str(tmp_path / "m" / "model.onnx"))
    inits = {i.name: numpy_helper.to_array(i) for i in graph.graph.initializer}
    meta = json.loads((tmp_path / "m" / "slimtorch_onnx.json").read_text())
    checked = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, QuantLinear):
            continue
        fused = next((k for k in meta["nbits"] if name in k.split("+")), None)
        info = meta["nbits"][fused]
        back = from_nbits(
            inits[f"{fused}.qweight"],
            inits[f"{fused}.scales"],
            inits[f"{fused}.qzeros"],
            info["K"],
            info["N"],
            info["bits"],
            info["block_size"],
            info["code_bits"],
            info["group_size"],
        )
        start = 0
        for part, rows in meta["fused"].get(fused, {"parts": [[name, info["N"]]]})["parts"]:
            if part == name:
                break
            start += rows
        rows = mod.codes.shape[0]
        assert torch.equal(back.codes[start : start + rows], mod.codes)
        assert torch.equal(back.scales[start : start + rows], mod.scales)
        assert torch.equal(back.zeros[start : start + rows], mod.zeros)
        checked += 1
    assert checked == 2 * 7


def test_hqq_fractional_zero_points_export_exactly(tmp_path):
    model = quantize_hqq(tiny_llama(), {"grid": {"bits": 4, "group_size": 32, "mse_search": False}})
    assert not next(m for m in model.modules() if isinstance(m, QuantLinear)).quantized().integral_zeros
    lm = _export(model, tmp_path)
    ids = tiny_ids(1, 9)
    assert torch.allclose(lm.logits(ids), model(ids).logits.detach(), atol=1e-4)


@pytest.mark.parametrize("bits,group", [(4, 32), (8, 16), (4, 64)])  # 64 > hidden 48: a padded block, sliced
def test_quantized_embedding_is_shared_with_the_tied_lm_head(tmp_path, bits, group):
    model = tiny_llama(hidden=48, heads=3, kv_heads=1, intermediate=96)
    lm = _export(model, tmp_path, embedding_bits=bits, embedding_group_size=group)
    meta = lm.meta
    assert meta["tied"] and meta["nbits"]["lm_head"]["initializer"] == "embed"
    # the reference: the same model with its (tied) table replaced by the dequantized grid
    table = rtn_weight(model.get_input_embeddings().weight.detach(), GridConfig(bits=bits, group_size=group))
    with torch.no_grad():
        model.get_input_embeddings().weight.copy_(table.dequantize())
    ids = tiny_ids(2, 8)
    assert torch.allclose(lm.logits(ids), model(ids).logits.detach(), atol=1e-4)
    float_bytes = onnx_size_bytes(
        export_onnx(tiny_llama(hidden=48, heads=3, kv_heads=1, intermediate=96), tmp_path / "f", EXACT)
    )
    assert onnx_size_bytes(tmp_path / "m") < float_bytes


def test_int8_activation_kernels_stay_close(tmp_path):
    model = quantize_rtn(tiny_llama(), {"grid": {"bits": 4, "group_size": 32}})
    fast = _export(model, tmp_path, accuracy_level=4)
    ids = tiny_ids(2, 16)
    ref = model(ids).logits.detach()
    out = fast.logits(ids)
    cos = torch.nn.functional.cosine_similarity(out.flatten(1), ref.flatten(1)).min()
    assert cos > 0.99
    assert not torch.equal(out, ref)  # it really is the int8-activation path


def test_sampling_is_seeded_and_respects_stop_tokens(tmp_path):
    lm = _export(tiny_llama(), tmp_path)
    prompt = [tiny_ids(1, 5)[0].tolist()]
    a = generate_onnx(lm, prompt, 12, greedy=False, temperature=0.9, top_p=0.8, top_k=20, seed=7)
    b = generate_onnx(lm, prompt, 12, greedy=False, temperature=0.9, top_p=0.8, top_k=20, seed=7)
    assert a.tokens == b.tokens and len(a.tokens[0]) == 12
    stop = a.tokens[0][3]
    c = generate_onnx(lm, prompt, 12, greedy=False, temperature=0.9, top_p=0.8, top_k=20, seed=7, stop_tokens=[stop])
    first = a.tokens[0].index(stop)
    assert c.tokens[0] == a.tokens[0][: first + 1]
    assert c.decode_tokens == first  # tokens after the prefill's, up to and including the stop


def test_bad_inputs_are_refused_clearly(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(UnsupportedModelError, match="model_type='gpt2'"):
        export_onnx(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)), tmp_path / "g")
    assert not (tmp_path / "g").exists()
    lm = _export(tiny_llama(), tmp_path)
    with pytest.raises(FileExistsError):
        export_onnx(tiny_llama(), tmp_path / "m")
    with pytest.raises(ConfigError, match="positions"):
        generate_onnx(lm, [[1, 2, 3]], max_new_tokens=lm.max_positions)
    with pytest.raises(ConfigError, match="at least one token"):
        generate_onnx(lm, [[]])
    with pytest.raises(ConfigError, match="embedding_group_size"):
        LMExportConfig.from_dict({"embedding_group_size": 48})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.onnx").write_bytes(b"")
    (tmp_path / "broken" / "slimtorch_onnx.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        OnnxCausalLM(tmp_path / "broken")
    with pytest.raises(FormatError, match="not an exported language model"):
        OnnxCausalLM(tmp_path)


@pytest.mark.parametrize("bits", [4, 8])
def test_q4_1_style_float_zero_embedding_is_exported_exactly(tmp_path, bits):
    from slimtorch.quantize.qembedding import QuantEmbedding, quantize_embedding

    model = quantize_embedding(
        tiny_llama(hidden=48, heads=3, kv_heads=1, intermediate=96),
        {"bits": bits, "group_size": 16, "float_zero": True},
    )
    emb = model.get_input_embeddings()
    assert isinstance(emb, QuantEmbedding) and not emb.quantized().integral_zeros
    if bits == 8:  # no such CPU kernel: refused with the reason, nothing written
        with pytest.raises(UnsupportedModelError, match="fractional zero points"):
            _export(model, tmp_path)
        assert not (tmp_path / "m").exists()
        return
    # the model's own codes are exported, whatever the export config asks for the table
    lm = _export(model, tmp_path, embedding_bits=8, embedding_group_size=32)
    assert lm.meta["nbits"]["embed"]["block_size"] == 16 and lm.meta["nbits"]["embed"]["code_bits"] == bits
    ids = tiny_ids(2, 8)
    assert torch.allclose(lm.logits(ids), model(ids).logits.detach(), atol=1e-4)


def test_float_zero_option_quantizes_a_float_table_that_way(tmp_path):
    model = tiny_llama()
    lm = _export(model, tmp_path, embedding_bits=4, embedding_group_size=32, embedding_float_zero=True)
    from onnx import load, numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in load(str(tmp_path / "m" / "model.onnx")).graph.initializer}
    assert inits["embed.qzeros"].dtype == np.float32  # fractional zeros, looked up without GatherBlockQuantized
    cos = torch.nn.functional.cosine_similarity(
        lm.logits(tiny_ids(1, 8)).flatten(), model(tiny_ids(1, 8)).logits.flatten(), dim=0
    )
    assert cos > 0.98
