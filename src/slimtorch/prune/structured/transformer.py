"""Attention heads and FFN neurons of BERT-style encoders (Hugging Face ``BertLayer`` layout).

A dedicated handler rather than the generic graph walk: attention reshapes the
hidden size into ``(heads, head_dim)``, and a head is the unit (Michel et al.,
2019, "Are sixteen heads really better than one?"). Per layer:

* head ``h`` = rows ``h*d … (h+1)*d-1`` of ``query``/``key``/``value`` and the same
  columns of ``attention.output.dense``; ``num_attention_heads`` and
  ``all_head_size`` are updated (the forward reshapes with ``-1`` heads);
* FFN neuron ``j`` = row ``j`` of ``intermediate.dense`` and column ``j`` of
  ``output.dense``.

The hidden size (tied to embeddings, residuals and LayerNorms) is kept.

``importance="activation"`` scores a unit by the mean norm of what it adds to the
layer output on calibration inputs, and folds the removed units' *mean*
contribution into the output projection's bias, so pruning removes only their
variation (the bias-compensation idea of Nagel et al., 2019, "Data-free
quantization", applied to removed units).
"""

from __future__ import annotations

import torch
from torch import nn

from slimtorch.core.errors import ConfigError, UnsupportedModelError
from slimtorch.prune.structured.config import StructuredConfig


def encoder_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules that look like a Hugging Face ``BertLayer`` (attention.self.query…, intermediate, output)."""
    out = []
    for name, m in model.named_modules():
        att = getattr(getattr(m, "attention", None), "self", None)
        if (
            att is not None
            and all(hasattr(att, a) for a in ("query", "key", "value", "num_attention_heads"))
            and hasattr(m, "intermediate")
            and hasattr(m, "output")
        ):
            out.append((name, m))
    return out


def _norm(w: torch.Tensor, p: str) -> torch.Tensor:
    return w.abs().sum(1) if p == "l1" else w.pow(2).sum(1)


def _n_keep(n: int, ratio: float, round_to: int) -> int:
    keep = n - int(ratio * n)
    keep = min(n, -(-keep // round_to) * round_to)
    return max(1, keep)


def _rows(lin: nn.Linear, idx: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight[idx].clone(), requires_grad=lin.weight.requires_grad)
    if lin.bias is not None:
        lin.bias = nn.Parameter(lin.bias[idx].clone(), requires_grad=lin.bias.requires_grad)
    lin.out_features = len(idx)


def _cols(lin: nn.Linear, idx: torch.Tensor) -> None:
    lin.weight = nn.Parameter(lin.weight[:, idx].clone(), requires_grad=lin.weight.requires_grad)
    lin.in_features = len(idx)


def _run(model: nn.Module, calib) -> None:
    if isinstance(calib, dict):
        model(**calib)
    elif isinstance(calib, tuple):
        model(*calib)
    else:
        model(calib)


@torch.no_grad()
def _contributions(model: nn.Module, layers, calib) -> dict[str, dict[str, torch.Tensor]]:
    """Per layer: head and FFN-neuron contribution norms and mean contributions (to the output bias)."""
    stats: dict[str, dict[str, torch.Tensor]] = {}
    hooks = []

    def on_attn_out(name, dense, h):
        def hook(mod, args):
            a = args[0].reshape(-1, h, dense.in_features // h)  # (tokens, heads, d)
            w = dense.weight.t().reshape(h, -1, dense.out_features)  # (heads, d, hidden)
            contrib = torch.einsum("thd,hdo->tho", a, w)
            st = stats.setdefault(name, {})
            st["head_norm"] = st.get("head_norm", 0) + contrib.norm(dim=2).sum(0)
            st["head_mean"] = st.get("head_mean", 0) + contrib.sum(0)
            st["tokens_a"] = st.get("tokens_a", 0) + a.shape[0]

        return hook

    def on_ffn_out(name, dense):
        def hook(mod, args):
            a = args[0].reshape(-1, dense.in_features)  # (tokens, neurons)
            st = stats.setdefault(name, {})
            st["ffn_norm"] = st.get("ffn_norm", 0) + a.abs().sum(0) * dense.weight.norm(dim=0)
            st["ffn_mean"] = st.get("ffn_mean", 0) + a.sum(0)
            st["tokens_f"] = st.get("tokens_f", 0) + a.shape[0]

        return hook

    for name, layer in layers:
        dense = layer.attention.output.dense
        hooks.append(
            dense.register_forward_pre_hook(on_attn_out(name, dense, layer.attention.self.num_attention_heads))
        )
        hooks.append(layer.output.dense.register_forward_pre_hook(on_ffn_out(name, layer.output.dense)))
    was = model.training
    model.eval()
    try:
        _run(model, calib)
    finally:
        model.train(was)
        for hk in hooks:
            hk.remove()
    for st in stats.values():
        st["head_norm"] = st["head_norm"] / st["tokens_a"]
        st["head_mean"] = st["head_mean"] / st["tokens_a"]  # (heads, hidden)
        st["ffn_norm"] = st["ffn_norm"] / st["tokens_f"]
        st["ffn_mean"] = st["ffn_mean"] / st["tokens_f"]  # (neurons,)
    return stats


def _scores(mats: list[torch.Tensor], cfg: StructuredConfig, n: int, gen: torch.Generator) -> torch.Tensor:
    if cfg.importance == "random":
        return torch.rand(n, generator=gen)
    if cfg.importance not in ("l1", "l2"):
        raise ConfigError(
            f"importance '{cfg.importance}' is not available for attention heads / FFN neurons; use l1, l2 or random",
            field="importance",
        )
    return sum(_norm(m, cfg.importance) for m in mats)


@torch.no_grad()
def prune_encoder(model: nn.Module, cfg: StructuredConfig, calib=None) -> dict[str, dict[str, int]]:
    """Prune heads (``cfg.heads_ratio`` or ``cfg.ratio``) and FFN neurons (``cfg.ratio``) of every encoder layer.

    Args:
        calib: model inputs (tensor of token ids, tuple, or dict of keyword tensors) for
            ``importance="activation"``.
    """
    layers = encoder_layers(model)
    if not layers:
        raise UnsupportedModelError("no BERT-style encoder layer (attention.self.query/key/value) found")
    stats = _contributions(model, layers, calib) if cfg.importance == "activation" else None
    heads_ratio = cfg.ratio if cfg.heads_ratio is None else cfg.heads_ratio
    gen = torch.Generator().manual_seed(cfg.seed)
    summary = {}
    for name, layer in layers:
        att, out_dense = layer.attention.self, layer.attention.output.dense
        ffn_in, ffn_out = layer.intermediate.dense, layer.output.dense
        for lin in (att.query, att.key, att.value, out_dense, ffn_in, ffn_out):
            if not isinstance(lin, nn.Linear):
                raise UnsupportedModelError(f"layer '{name}': expected nn.Linear projections, got {type(lin).__name__}")
        h, d = att.num_attention_heads, att.attention_head_size
        # heads: [h, d*in] slices of q, k, v and [h, d*out] columns of the output projection
        per_head = [lin.weight.reshape(h, -1) for lin in (att.query, att.key, att.value)]
        per_head.append(out_dense.weight.t().reshape(h, -1))
        keep_h = _n_keep(h, heads_ratio, 1)
        if keep_h < h:
            sc = stats[name]["head_norm"] if stats else _scores(per_head, cfg, h, gen)
            heads = torch.sort(torch.topk(sc, keep_h).indices).values
            if stats and out_dense.bias is not None:
                gone = torch.ones(h, dtype=torch.bool)
                gone[heads] = False
                out_dense.bias += stats[name]["head_mean"][gone].sum(0)
            idx = (heads[:, None] * d + torch.arange(d)).reshape(-1)
            for lin in (att.query, att.key, att.value):
                _rows(lin, idx)
            _cols(out_dense, idx)
            att.num_attention_heads = keep_h
            att.all_head_size = keep_h * d
        n = ffn_in.out_features
        keep_n = _n_keep(n, cfg.ratio, cfg.round_to)
        if keep_n < n:
            s = stats[name]["ffn_norm"] if stats else _scores([ffn_in.weight, ffn_out.weight.t()], cfg, n, gen)
            idx = torch.sort(torch.topk(s, keep_n).indices).values
            if stats and ffn_out.bias is not None:
                gone = torch.ones(n, dtype=torch.bool)
                gone[idx] = False
                ffn_out.bias += ffn_out.weight[:, gone] @ stats[name]["ffn_mean"][gone]
            _rows(ffn_in, idx)
            _cols(ffn_out, idx)
        summary[name] = {"heads": att.num_attention_heads, "ffn": ffn_in.out_features}
    return summary
