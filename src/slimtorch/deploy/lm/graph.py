"""Export a Llama-family decoder to one ONNX graph with a KV cache and ONNX Runtime's fused CPU kernels.

Why the graph is written here instead of traced: ``torch.onnx.export`` of a
Hugging Face decoder with its cache object is fragile across versions, and a
traced graph carries float weights that would then have to be re-quantized
(losing the integers GPTQ / AWQ / HQQ chose). Writing the graph directly, as
``onnxruntime-genai``'s model builder does, lets every quantized ``Linear`` become
a ``MatMulNBits`` holding exactly its codes, scales and zero points
(:mod:`slimtorch.deploy.lm.pack`), and uses the kernels ONNX Runtime ships for
decoders on CPU:

* ``GroupQueryAttention`` (com.microsoft) with rotary positions applied inside,
  packed q/k/v input, and the past / present KV cache;
* ``SimplifiedLayerNormalization`` / ``SkipSimplifiedLayerNormalization`` (RMSNorm
  with the residual add fused);
* ``MatMulNBits`` for quantized projections (q/k/v fused into one, gate/up into one,
  when their grids agree), ``MatMul`` for float ones;
* ``GatherBlockQuantized`` for the token embedding, reading the same initializer as
  the tied ``lm_head``'s ``MatMulNBits``, so the table is stored once.

One graph serves prefill and decode: inputs ``input_ids (B, S)``, ``attention_mask
(B, past + S)`` and ``past_key_values.{i}.key/value (B, kv_heads, past, head_dim)``;
outputs ``logits (B, S, V)`` and ``present.{i}.key/value``. Batches are
right-padded: row ``b``'s real tokens are the first ``sum(mask[b])`` positions
(``GroupQueryAttention``'s ``seqlens_k`` convention).

Supported: ``model_type`` llama (SmolLM, Llama 2/3), mistral and qwen2 (q/k/v
biases) with SiLU-gated MLPs and RMSNorm; anything else is refused with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.core.fileio import atomic_dir, atomic_write_bytes
from slimtorch.deploy.lm.config import LMExportConfig
from slimtorch.deploy.lm.pack import NBitsTensors, concat_rows, fusable, to_nbits
from slimtorch.quantize.qlinear import QuantLinear
from slimtorch.quantize.wgrid import QuantizedWeight

SUPPORTED = ("llama", "mistral", "qwen2")
FORMAT = "slimtorch-onnx-lm/1"
OPSET = 21
MAX_CACHE = 8192


@dataclass
class _Graph:
    """Nodes and initializers being collected (names are unique by construction)."""

    nodes: list = field(default_factory=list)
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    consts: dict[str, str] = field(default_factory=dict)
    n: int = 0
    nbits: dict[str, dict] = field(default_factory=dict)  # MatMulNBits node name -> its layout (for readers)

    def node(self, op: str, inputs: list[str], outputs: int | list[str] = 1, domain: str = "", **attrs) -> list[str]:
        from onnx import helper

        self.n += 1
        name = f"{op}_{self.n}"
        outs = [f"{name}/out{k}" for k in range(outputs)] if isinstance(outputs, int) else outputs
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, domain=domain or None, **attrs))
        return outs

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits[name] = np.ascontiguousarray(value)
        return name

    def const(self, value: Any, dtype=np.int64) -> str:
        arr = np.asarray(value, dtype=dtype)
        key = f"{arr.dtype}:{arr.shape}:{arr.tobytes().hex()}"
        if key not in self.consts:
            self.consts[key] = self.init(f"const_{len(self.consts)}", arr)
        return self.consts[key]


def _check_supported(model: nn.Module) -> Any:
    config = getattr(model, "config", None)
    mtype = getattr(config, "model_type", None)
    if mtype not in SUPPORTED:
        raise UnsupportedModelError(
            f"ONNX export with a KV cache supports Hugging Face decoders of type {', '.join(SUPPORTED)}; "
            f"this model is {type(model).__name__} (model_type={mtype!r}). Its perplexity and PyTorch generation "
            "still work (slimtorch eval / generate without --onnx)"
        )
    act = getattr(config, "hidden_act", "silu")
    if act not in ("silu", "swish"):
        raise UnsupportedModelError(f"the MLP activation is {act!r}; the exported graph implements SiLU-gated MLPs")
    if getattr(config, "mlp_bias", False):
        raise UnsupportedModelError("MLP biases (mlp_bias=True) are not exported; only q/k/v/o biases are")
    return config


def _head_dim(config) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _rotary_caches(model: nn.Module, length: int, head_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """cos / sin ``(length, rotary_dim / 2)`` from the model's own rotary module (any rope scaling it implements)."""
    rotary = getattr(getattr(model, "model", model), "rotary_emb", None)
    if rotary is None:
        raise UnsupportedModelError(f"{type(model).__name__} has no model.rotary_emb; cannot build rotary caches")
    with torch.no_grad():
        cos, sin = rotary(torch.zeros(1, 1, head_dim), torch.arange(length)[None])
    half = cos.shape[-1] // 2
    return cos[0, :, :half].float().numpy(), sin[0, :, :half].float().numpy()


def _weight_of(module: nn.Module) -> tuple[QuantizedWeight | None, torch.Tensor | None, torch.Tensor | None]:
    """(quantized weight or None, float weight or None, bias or None) of a Linear / QuantLinear."""
    bias = None if getattr(module, "bias", None) is None else module.bias.detach().float()
    if isinstance(module, QuantLinear):
        return module.quantized(), None, bias
    if isinstance(module, nn.Linear):
        return None, module.weight.detach().float(), bias
    raise UnsupportedModelError(f"expected a Linear or QuantLinear, found {type(module).__name__}")


class _Builder:
    def __init__(self, model: nn.Module, cfg: LMExportConfig):
        self.model, self.cfg, self.g = model, cfg, _Graph()
        self.config = _check_supported(model)
        self.heads = int(self.config.num_attention_heads)
        self.kv_heads = int(getattr(self.config, "num_key_value_heads", None) or self.heads)
        self.head_dim = _head_dim(self.config)
        self.hidden = int(self.config.hidden_size)
        self.eps = float(getattr(self.config, "rms_norm_eps", 1e-6))
        self.layout: dict[str, Any] = {}

    def _table(self, prefix: str, qw: QuantizedWeight) -> NBitsTensors:
        """Initializers ``{prefix}.qweight/.scales/.qzeros`` of a quantized weight, and its layout for readers."""
        t = to_nbits(qw)
        self.g.init(f"{prefix}.qweight", t.B)
        self.g.init(f"{prefix}.scales", t.scales)
        self.g.init(f"{prefix}.qzeros", t.zero_points)
        self.g.nbits[prefix] = {
            "K": t.K,
            "N": t.N,
            "bits": t.bits,
            "block_size": t.block_size,
            "code_bits": t.code_bits,
            "group_size": qw.group_size,
        }
        return t

    # ---- projections ------------------------------------------------------------------------------
    def _bias(self, out: str, name: str, bias: torch.Tensor | None) -> str:
        return out if bias is None else self.g.node("Add", [out, self.g.init(f"{name}.bias", bias.numpy())])[0]

    def _nbits(self, x: str, qw: QuantizedWeight, name: str, bias: torch.Tensor | None) -> str:
        t = self._table(name, qw)
        out = self.g.node(
            "MatMulNBits",
            [x, f"{name}.qweight", f"{name}.scales", f"{name}.qzeros"],
            [f"{name}/out"],
            domain="com.microsoft",
            K=t.K,
            N=t.N,
            bits=t.bits,
            block_size=t.block_size,
            accuracy_level=self.cfg.accuracy_level,
        )[0]
        return self._bias(out, name, bias)

    def _float(self, x: str, w: torch.Tensor, name: str, bias: torch.Tensor | None) -> str:
        out = self.g.node("MatMul", [x, self.g.init(f"{name}.weight_t", w.t().contiguous().numpy())])[0]
        return self._bias(out, name, bias)

    def linear(self, x: str, modules: list[tuple[str, nn.Module]], split: bool = True) -> list[str]:
        """Outputs of the given projections of ``x``: one fused kernel where their grids agree.

        ``split=False`` returns the fused output whole (one name) for a consumer that takes
        it packed, as ``GroupQueryAttention`` takes q/k/v.
        """
        parts = [_weight_of(m) for _, m in modules]
        qws, ws, biases = zip(*parts)
        quantized = all(q is not None for q in qws)
        if len(modules) > 1 and self.cfg.fuse and (quantized and fusable(list(qws)) or all(w is not None for w in ws)):
            name = "+".join(n for n, _ in modules)
            sizes = [int(q.codes.shape[0]) if quantized else int(w.shape[0]) for q, w in zip(qws, ws)]
            bias = None
            if any(b is not None for b in biases):
                bias = torch.cat([b if b is not None else torch.zeros(n) for b, n in zip(biases, sizes)])
            fused = (
                self._nbits(x, concat_rows(list(qws)), name, bias)
                if quantized
                else self._float(x, torch.cat(ws), name, bias)
            )
            self.layout[name] = {"parts": [[n, sz] for (n, _), sz in zip(modules, sizes)]}
            if not split:
                return [fused]
            return self.g.node("Split", [fused, self.g.const(sizes)], len(modules), axis=-1)
        return [
            self._nbits(x, qw, name, b) if qw is not None else self._float(x, w, name, b)
            for (name, _), (qw, w, b) in zip(modules, parts)
        ]

    # ---- embedding / lm_head ----------------------------------------------------------------------
    def _rtn(self, w: torch.Tensor) -> QuantizedWeight:
        from slimtorch.quantize.qembedding import EmbeddingGrid, quantize_table

        grid = EmbeddingGrid(
            bits=self.cfg.embedding_bits,
            group_size=self.cfg.embedding_group_size,
            mse_search=self.cfg.embedding_mse_search,
            float_zero=self.cfg.embedding_float_zero,
        )
        return quantize_table(w, grid)

    def tables(self) -> tuple[bool, QuantizedWeight | None, QuantizedWeight | None]:
        """(tied, quantized embedding table or None, quantized lm_head or None).

        A tied pair shares one quantized table (the embedding reads the lm_head's
        ``MatMulNBits`` initializer); a ``QuantLinear`` lm_head keeps its own codes.
        """
        from slimtorch.quantize.qembedding import QuantEmbedding

        lm_head = self.model.get_output_embeddings()
        emb_module = self.model.get_input_embeddings()
        emb = emb_module.weight
        own = emb_module.quantized() if isinstance(emb_module, QuantEmbedding) else None
        if own is not None and not isinstance(lm_head, QuantLinear):
            tied = lm_head.weight.data_ptr() == emb.data_ptr()
            return (
                tied,
                own,
                own
                if tied
                else (None if self.cfg.embedding_bits is None else self._rtn(lm_head.weight.detach().float())),
            )
        if isinstance(lm_head, QuantLinear):
            head = lm_head.quantized()
            tied = bool(getattr(self.config, "tie_word_embeddings", False)) and tuple(head.codes.shape) == tuple(
                emb.shape
            )
        else:
            tied = lm_head.weight.data_ptr() == emb.data_ptr()
            head = None if self.cfg.embedding_bits is None else self._rtn(lm_head.weight.detach().float())
        if tied:
            return True, head, head
        table = own if own is not None else None if self.cfg.embedding_bits is None else self._rtn(emb.detach().float())
        return False, table, head

    def _lookup_float_zero(self, flat: str, scales: str, zeros: str, t: NBitsTensors) -> str:
        """Embedding rows ``(code - zero) * scale`` from the shared packed table, with standard ONNX ops."""
        g = self.g
        rows = g.node("Gather", [flat, "input_ids"], axis=0)[0]  # (B, S, n_blocks * blob) uint8
        per = 8 // t.bits
        if per == 1:
            codes = rows
        else:
            mask = g.const(np.array((1 << t.bits) - 1, dtype=np.uint8), dtype=np.uint8)
            parts = []
            for k in range(per):  # low bits first, as MatMulNBits packs them
                shifted = (
                    rows
                    if k == 0
                    else g.node(
                        "BitShift",
                        [rows, g.const(np.array(k * t.bits, dtype=np.uint8), dtype=np.uint8)],
                        direction="RIGHT",
                    )[0]
                )
                parts.append(g.node("Unsqueeze", [g.node("BitwiseAnd", [shifted, mask])[0], g.const([-1])])[0])
            codes = g.node("Concat", parts, axis=-1)[0]
        n_blocks = t.B.shape[1]
        shape = g.node("Concat", [g.node("Shape", ["input_ids"])[0], g.const([n_blocks, t.block_size])], axis=0)[0]
        q = g.node("Cast", [g.node("Reshape", [codes, shape])[0]], to=1)[0]  # (B, S, n_blocks, block) float
        s = g.node("Unsqueeze", [g.node("Gather", [scales, "input_ids"], axis=0)[0], g.const([-1])])[0]
        z = g.node("Unsqueeze", [g.node("Gather", [zeros, "input_ids"], axis=0)[0], g.const([-1])])[0]
        w = g.node("Mul", [g.node("Sub", [q, z])[0], s])[0]
        flat_shape = g.node("Concat", [g.node("Shape", ["input_ids"])[0], g.const([n_blocks * t.block_size])], axis=0)[
            0
        ]
        return g.node("Reshape", [w, flat_shape])[0]

    # ---- the graph --------------------------------------------------------------------------------
    def build(self):
        from onnx import TensorProto, helper, numpy_helper

        g, cfg, config = self.g, self.cfg, self.config
        layers = self.model.model.layers
        vocab = int(self.model.get_input_embeddings().weight.shape[0])
        length = min(int(cfg.max_positions or getattr(config, "max_position_embeddings", 2048)), MAX_CACHE)
        cos, sin = _rotary_caches(self.model, length, self.head_dim)
        cos_name, sin_name = g.init("cos_cache", cos), g.init("sin_cache", sin)

        # seqlens_k = tokens per row - 1, total_sequence_length = mask width (GroupQueryAttention's inputs)
        summed = g.node("ReduceSum", ["attention_mask", g.const([1])], keepdims=0)[0]
        seqlens = g.node("Cast", [g.node("Sub", [summed, g.const(1)])[0]], to=TensorProto.INT32)[0]
        width = g.node("Gather", [g.node("Shape", ["attention_mask"])[0], g.const(1)], axis=0)[0]
        total = g.node("Cast", [width], to=TensorProto.INT32)[0]

        tied, emb_q, head_q = self.tables()
        lm_head = self.model.get_output_embeddings()
        if emb_q is not None:
            t = emb_t = self._table("embed", emb_q)
            n_blocks = t.B.shape[1]
            flat = g.node("Reshape", ["embed.qweight", g.const([vocab, n_blocks * t.B.shape[2]])])[0]
            zp = g.node("Reshape", ["embed.qzeros", g.const([vocab, -1])])[0]
            sc = g.node("Reshape", ["embed.scales", g.const([vocab, n_blocks])])[0]
            if t.zero_points.dtype == np.uint8:
                x = g.node(
                    "GatherBlockQuantized",
                    [flat, "input_ids", sc, zp],
                    domain="com.microsoft",
                    bits=t.bits,
                    block_size=t.block_size,
                    gather_axis=0,
                    quantize_axis=1,
                )[0]
            else:  # fractional zeros (Q4_1 / HQQ grids): GatherBlockQuantized takes integer ones only
                x = self._lookup_float_zero(flat, sc, zp, t)
            if n_blocks * t.block_size != self.hidden:  # a padded last block: drop the padding columns
                x = g.node("Slice", [x, g.const([0]), g.const([self.hidden]), g.const([-1])])[0]
        else:
            emb = self.model.get_input_embeddings().weight.detach().float().numpy()
            x = g.node("Gather", [g.init("embed.weight", emb), "input_ids"], axis=0)[0]

        inputs = [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
        ]
        outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])]
        kv_shape = ["batch", self.kv_heads, "past", self.head_dim]
        residual, hidden = None, None
        for i, layer in enumerate(layers):
            p = f"model.layers.{i}"
            ln1 = g.init(f"{p}.input_layernorm.weight", layer.input_layernorm.weight.detach().float().numpy())
            if residual is None:
                hidden = g.node("SimplifiedLayerNormalization", [x, ln1], axis=-1, epsilon=self.eps, stash_type=1)[0]
                residual = x
            else:
                hidden, _, _, residual = g.node(
                    "SkipSimplifiedLayerNormalization",
                    [hidden, residual, ln1],
                    4,
                    domain="com.microsoft",
                    epsilon=self.eps,
                )
            attn = layer.self_attn
            qkv = self.linear(
                hidden,
                [
                    (f"{p}.self_attn.q_proj", attn.q_proj),
                    (f"{p}.self_attn.k_proj", attn.k_proj),
                    (f"{p}.self_attn.v_proj", attn.v_proj),
                ],
                split=False,
            )
            if len(qkv) == 1:  # packed q/k/v: GroupQueryAttention splits it itself (no Split node per layer)
                qkv = [qkv[0], "", ""]
            past_k, past_v = f"past_key_values.{i}.key", f"past_key_values.{i}.value"
            pres_k, pres_v = f"present.{i}.key", f"present.{i}.value"
            for nm in (past_k, past_v):
                inputs.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT, kv_shape))
            for nm in (pres_k, pres_v):
                outputs.append(
                    helper.make_tensor_value_info(
                        nm, TensorProto.FLOAT, ["batch", self.kv_heads, "total", self.head_dim]
                    )
                )
            window = (
                int(getattr(config, "sliding_window", None) or -1)
                if getattr(config, "use_sliding_window", True)
                else -1
            )
            ctx = g.node(
                "GroupQueryAttention",
                [*qkv, past_k, past_v, seqlens, total, cos_name, sin_name],
                [f"{p}.attn/out", pres_k, pres_v],
                domain="com.microsoft",
                num_heads=self.heads,
                kv_num_heads=self.kv_heads,
                do_rotary=1,
                rotary_interleaved=0,
                local_window_size=window,
                scale=float(getattr(attn, "scaling", self.head_dim**-0.5)),
            )[0]
            (attn_out,) = self.linear(ctx, [(f"{p}.self_attn.o_proj", attn.o_proj)])
            ln2 = g.init(
                f"{p}.post_attention_layernorm.weight", layer.post_attention_layernorm.weight.detach().float().numpy()
            )
            hidden, _, _, residual = g.node(
                "SkipSimplifiedLayerNormalization",
                [attn_out, residual, ln2],
                4,
                domain="com.microsoft",
                epsilon=self.eps,
            )
            mlp = layer.mlp
            gate, up = self.linear(hidden, [(f"{p}.mlp.gate_proj", mlp.gate_proj), (f"{p}.mlp.up_proj", mlp.up_proj)])
            act = g.node("Mul", [gate, g.node("Sigmoid", [gate])[0]])[0]
            (hidden,) = self.linear(g.node("Mul", [act, up])[0], [(f"{p}.mlp.down_proj", mlp.down_proj)])
        norm = g.init("model.norm.weight", self.model.model.norm.weight.detach().float().numpy())
        final = g.node(
            "SkipSimplifiedLayerNormalization", [hidden, residual, norm], 1, domain="com.microsoft", epsilon=self.eps
        )[0]
        if head_q is not None:
            prefix = "embed" if tied else "lm_head"
            t = emb_t if tied else self._table("lm_head", head_q)
            g.nodes.append(
                helper.make_node(
                    "MatMulNBits",
                    [final, f"{prefix}.qweight", f"{prefix}.scales", f"{prefix}.qzeros"],
                    ["logits"],
                    name="lm_head",
                    domain="com.microsoft",
                    K=t.K,
                    N=t.N,
                    bits=t.bits,
                    block_size=t.block_size,
                    accuracy_level=self.cfg.accuracy_level,
                )
            )
            g.nbits["lm_head"] = {**g.nbits[prefix], "initializer": prefix}
        elif tied:  # float and tied: the lm_head reads the embedding table transposed (folded at load)
            g.nodes.append(
                helper.make_node(
                    "MatMul", [final, g.node("Transpose", ["embed.weight"], perm=[1, 0])[0]], ["logits"], name="lm_head"
                )
            )
        else:
            w = lm_head.weight.detach().float().t().contiguous().numpy()
            g.nodes.append(
                helper.make_node("MatMul", [final, g.init("lm_head.weight_t", w)], ["logits"], name="lm_head")
            )
        graph = helper.make_graph(
            g.nodes, "slimtorch_decoder", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in g.inits.items()]
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.microsoft", 1)],
            producer_name="slimtorch",
        )
        meta = {
            "format": FORMAT,
            "layers": len(layers),
            "kv_heads": self.kv_heads,
            "head_dim": self.head_dim,
            "heads": self.heads,
            "hidden": self.hidden,
            "vocab": vocab,
            "max_positions": length,
            "tied": tied,
            "config": cfg.to_dict(),
            "nbits": g.nbits,
            "fused": self.layout,
            "quantized_embedding": emb_q is not None,
            "quantized_lm_head": head_q is not None,
        }
        return model, meta


def export_onnx(
    model: nn.Module, directory: str | os.PathLike, config: LMExportConfig | dict | None = None, tokenizer=None
) -> Path:
    """Write ``model`` as ``directory/model.onnx`` (+ ``model.onnx.data``, ``slimtorch_onnx.json``, tokenizer).

    ``QuantLinear`` layers become ``MatMulNBits`` with their exact integers; float
    ``Linear`` layers stay float ``MatMul``. The folder is written atomically and
    never overwritten.

    Raises:
        FileExistsError: ``directory`` exists.
        UnsupportedModelError: an architecture or grid the graph cannot express (named).
    """
    import onnx

    cfg = config if isinstance(config, LMExportConfig) else LMExportConfig.from_dict(config or {}, "export")
    directory = Path(directory)
    if directory.exists():
        raise FileExistsError(f"{directory} exists; choose a new folder (an exported model is never overwritten)")
    graph, meta = _Builder(model, cfg).build()
    with atomic_dir(directory) as tmp:
        onnx.save_model(
            graph,
            str(tmp / "model.onnx"),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location="model.onnx.data",
            size_threshold=1024,
        )
        atomic_write_bytes(tmp / "slimtorch_onnx.json", json.dumps(meta, indent=1).encode())
        tok = tokenizer if tokenizer is not None else getattr(model, "slimtorch_tokenizer", None)
        if tok is not None:
            tok.save_pretrained(tmp)
        if getattr(model, "config", None) is not None:
            model.config.save_pretrained(tmp)
    return directory


def onnx_size_bytes(directory: str | os.PathLike) -> int:
    """Bytes of the exported graph and its weights (what a deployment ships)."""
    d = Path(directory)
    return sum((d / f).stat().st_size for f in ("model.onnx", "model.onnx.data") if (d / f).is_file())
