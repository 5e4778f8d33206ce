"""Language models in .slim files: a pruned + quantized tiny Llama round-trips bit-exactly and streams back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimtorch.core.errors import FormatError
from slimtorch.encode import format as slim_format
from slimtorch.encode.format import SlimReader
from slimtorch.encode.lm import (
    half_scales,
    load_slim_lm,
    save_slim_lm,
    slim_breakdown,
    slim_state,
)
from slimtorch.encode.quant_tensor import QuantTensor
from slimtorch.prune import prune_sparsegpt
from slimtorch.quantize.qembedding import QuantEmbedding, quantize_embedding
from slimtorch.quantize.qlinear import QuantLinear
from slimtorch.quantize.rtn import quantize_rtn
from tests.llm_fixtures import tiny_ids, tiny_llama

G32 = {"bits": 4, "group_size": 32}


def _compressed(sparsity: float | None = 0.5) -> torch.nn.Module:
    model = quantize_embedding(tiny_llama(), {**G32, "mse_search": False})
    if sparsity is None:
        return quantize_rtn(model, {"grid": G32}, inplace=True)
    return prune_sparsegpt(model, {"sparsity": sparsity, "grid": G32}, tiny_ids(4, 32), inplace=True)


@pytest.fixture(scope="module")
def model():
    return half_scales(_compressed())


@pytest.fixture(scope="module")
def slim_file(model, tmp_path_factory):
    return save_slim_lm(model, tmp_path_factory.mktemp("slim") / "m.slim")


def test_reload_gives_identical_logits_and_tied_quantized_embedding(model, slim_file):
    back = load_slim_lm(slim_file)
    ids = tiny_ids(2, 24, seed=3)
    with torch.no_grad():
        assert torch.equal(model(ids).logits, back(ids).logits)
    assert isinstance(back.model.embed_tokens, QuantEmbedding)
    assert back.lm_head.weight is back.model.embed_tokens.weight  # the tie survives
    assert sum(isinstance(m, QuantLinear) for m in back.modules()) == 14
    assert not any(t.is_meta for t in list(back.parameters()) + list(back.buffers()))


def test_codes_scales_zeros_masks_and_float_parts_are_bit_exact(model, slim_file):
    a, arch_a = slim_state(model)
    b, arch_b = slim_state(load_slim_lm(slim_file))
    assert list(a) == list(b) and arch_a["tied"] == arch_b["tied"] == {"lm_head.weight": "model.embed_tokens.weight"}
    for name, va in a.items():
        if isinstance(va, QuantTensor):
            vb = b[name]
            assert np.array_equal(va.codes, vb.codes) and np.array_equal(va.zeros, vb.zeros), name
            assert va.scales.tobytes() == vb.scales.tobytes(), name
            assert np.array_equal(va.nonzero_mask(), vb.nonzero_mask()), name
        else:
            assert va.dtype == b[name].dtype and torch.equal(va, b[name]), name


def test_pruned_weights_decode_to_exact_zero_and_are_not_stored(model, slim_file):
    back = load_slim_lm(slim_file)
    q = back.model.layers[0].mlp.up_proj
    assert float((q.weight == 0).float().mean()) >= 0.5  # the 50 % pruned, plus codes that hit the zero point
    entries = {e["name"]: e for e in SlimReader(slim_file).entries}
    e = entries["model.layers.0.mlp.up_proj"]
    assert e["kind"] == "quant" and e["nnz"] == int((q.weight != 0).sum())
    assert e["scales"]["stored"] == "float16"  # half_scales made them exact float16


def test_loading_streams_one_tensor_at_a_time_in_block_order(slim_file, monkeypatch):
    reads: list[str] = []
    original = slim_format.SlimReader.read

    def spy(self, name):
        reads.append(name)
        return original(self, name)

    monkeypatch.setattr(slim_format.SlimReader, "read", spy)
    load_slim_lm(slim_file)
    assert reads == SlimReader(slim_file).names and len(set(reads)) == len(reads)
    assert reads[0] == "model.embed_tokens"
    block = [int(n.split(".")[2]) for n in reads if n.startswith("model.layers.")]
    assert block == sorted(block)  # block 0 is complete before block 1 starts


def test_sparse_quantized_file_is_smaller_than_dense_quantized(tmp_path, slim_file):
    dense = save_slim_lm(half_scales(_compressed(None)), tmp_path / "dense.slim")
    sparse_info, dense_info = slim_breakdown(slim_file), slim_breakdown(dense)
    assert sparse_info["file"] < dense_info["file"]
    coded = lambda info: info["decoder_codes"] + info["decoder_indices"]
    assert coded(sparse_info) < 0.85 * coded(dense_info)
    assert sparse_info["nonzero_weights"] < dense_info["nonzero_weights"]


def test_float32_scales_are_kept_exactly_when_not_halved(tmp_path):
    m = _compressed(None)
    back = load_slim_lm(save_slim_lm(m, tmp_path / "f32.slim"))
    assert torch.equal(m.model.layers[1].self_attn.q_proj.scales, back.model.layers[1].self_attn.q_proj.scales)
    with torch.no_grad():
        ids = tiny_ids(1, 16)
        assert torch.equal(m(ids).logits, back(ids).logits)


def test_refuses_to_overwrite(model, slim_file):
    before = slim_file.read_bytes()
    with pytest.raises(FileExistsError, match="exists"):
        save_slim_lm(model, slim_file)
    assert slim_file.read_bytes() == before


def test_tokenizer_travels_in_the_file(model, tmp_path):
    from tests.llm_dirs import byte_tokenizer

    back = load_slim_lm(save_slim_lm(model, tmp_path / "tok.slim", byte_tokenizer()))
    assert back.slimtorch_tokenizer("hi")["input_ids"] == byte_tokenizer()("hi")["input_ids"]


@pytest.mark.parametrize("cut", [0, 7, 100, -1, -1000])
def test_truncated_files_are_refused_before_decoding(slim_file, tmp_path, cut):
    data = slim_file.read_bytes()
    bad = tmp_path / "cut.slim"
    bad.write_bytes(data[:cut])
    with pytest.raises(FormatError, match="truncated|too short|not a .slim"):
        load_slim_lm(bad)


def test_corrupt_payload_names_the_tensor(slim_file, tmp_path):
    reader = SlimReader(slim_file)
    a, b = reader._spans[reader.entry("model.layers.1.mlp.down_proj")["payload"]]
    data = bytearray(slim_file.read_bytes())
    data[reader._base + (a + b) // 2] ^= 0x20
    bad = tmp_path / "flip.slim"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="model.layers.1.mlp.down_proj': payload checksum mismatch"):
        load_slim_lm(bad)


def test_corrupt_header_and_foreign_files_are_named(slim_file, tmp_path):
    data = bytearray(slim_file.read_bytes())
    n = int.from_bytes(data[:8], "little")
    header = bytes(data[8 : 8 + n])
    i = header.index(b"manifest_sha256") + 20
    data[8 + i] ^= 1  # one character of the manifest's checksum
    bad = tmp_path / "hdr.slim"
    bad.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="checksum mismatch|not valid JSON"):
        load_slim_lm(bad)
    small = tmp_path / "small.slim"
    slim_format.save_slim(small, {"w": np.ones((2, 2), np.float32)}, {"model": "lenet"})
    with pytest.raises(FormatError, match="not a language-model .slim file"):
        load_slim_lm(small)


def test_manifest_lacking_a_tensor_is_refused(slim_file, tmp_path):
    from tests.encode.slim_edit import with_manifest

    data = with_manifest(
        slim_file.read_bytes(),
        lambda entries: entries.remove(next(e for e in entries if e["name"] == "model.norm.weight")),
    )
    bad = tmp_path / "lack.slim"
    bad.write_bytes(data)
    with pytest.raises(FormatError, match="lacks tensors .*model.norm.weight"):
        load_slim_lm(bad)


def test_stale_embedding_codes_are_refused(tmp_path):
    m = _compressed(None)
    with torch.no_grad():
        m.model.embed_tokens.weight.add_(1.0)
    with pytest.raises(FormatError, match="stale"):
        save_slim_lm(m, tmp_path / "stale.slim")
    assert not (tmp_path / "stale.slim").exists()


def test_attention_implementation_is_kept_so_logits_match_bit_for_bit(tmp_path):
    m = _compressed(None)
    m.config._attn_implementation = "eager"  # e.g. what a recipe's loader picked; sdpa differs in the last bits
    back = load_slim_lm(save_slim_lm(m, tmp_path / "eager.slim"))
    assert back.config._attn_implementation == "eager"
    with torch.no_grad():
        ids = tiny_ids(1, 32, seed=5)
        assert torch.equal(m(ids).logits, back(ids).logits)


def test_quantized_linears_with_biases_round_trip(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        attention_bias=True,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = LlamaForCausalLM(cfg).float().eval()
        for mod in m.modules():
            if isinstance(mod, torch.nn.Linear) and mod.bias is not None:
                torch.nn.init.normal_(mod.bias)
    m = half_scales(quantize_rtn(m, {"grid": G32}, inplace=True))
    back = load_slim_lm(save_slim_lm(m, tmp_path / "bias.slim"))
    assert torch.equal(back.model.layers[0].self_attn.q_proj.bias, m.model.layers[0].self_attn.q_proj.bias)
    assert back.lm_head.weight is not back.model.embed_tokens.weight  # untied stays untied
    with torch.no_grad():
        ids = tiny_ids(1, 16, vocab=64)
        assert torch.equal(m(ids).logits, back(ids).logits)
