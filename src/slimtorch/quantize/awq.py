"""AWQ (Lin et al. 2024): activation-aware weight-only quantization by per-channel scaling and clipping.

A few input channels of each Linear carry large activations; rounding errors on
their weights cost the most. AWQ multiplies those weight columns by ``s > 1``
before quantization and divides the op that feeds the Linear (the RMSNorm
weight, or the rows of ``up_proj`` for ``down_proj``) by the same ``s``, which
is exact in float. Per scaling group, ``s = x̄^α / w̄^(1-α)`` (normalised), with
``α`` chosen on a grid by the output error of the module the group feeds, as
in the reference code (``duo_scaling``). Then each group's clipping range is
searched by the *output* error it causes; here that error is computed exactly
from the group's block of the input Gram matrix, ``(W-Q) H_g (W-Q)ᵀ``, instead
of re-running the matmul on sampled tokens.

The scaling groups follow the Llama block layout (Llama, Mistral, Qwen2,
SmolLM): RMSNorm → q/k/v (judged on the block output), RMSNorm → gate/up
(judged on the MLP output), up → down, and v → o when their shapes match
(not with grouped-query attention). A block without those modules is an
:class:`UnsupportedModelError` naming what is missing. ``then_gptq`` runs GPTQ
on the AWQ-scaled weights instead of round-to-nearest.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, sequential, slice_kwargs
from slimtorch.core.errors import UnsupportedModelError
from slimtorch.quantize.gptq import GPTQConfig, accumulate, hessian_accumulator, quantize_block
from slimtorch.quantize.qlinear import quantized_state, replace_linear, restore_quantized
from slimtorch.quantize.weight_only import WeightOnlyConfig, coerce, selected_linears, target
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    fit_params,
    group_bounds,
    quantize_codes,
)


class AWQConfig(WeightOnlyConfig):
    """AWQ settings.

    Attributes:
        n_grid: points of the ``α`` grid in [0, 1).
        search_samples: calibration sequences for the scale search (4 x 512 tokens: each grid point reruns the
            module; the clipping statistics use every sequence).
        clip_search: search each group's clipping range by output error.
        then_gptq: quantize the scaled weights with GPTQ (AWQ + GPTQ) instead of round-to-nearest.
        batch_size: calibration sequences per forward.
    """

    n_grid: int = pydantic.Field(20, ge=1)
    search_samples: int = pydantic.Field(4, ge=1)
    clip_search: bool = True
    then_gptq: bool = False
    batch_size: int = pydantic.Field(8, ge=1)


def output_search(
    w: torch.Tensor, H: torch.Tensor, grid: GridConfig, steps: int = 20, min_shrink: float = 0.5
) -> QuantizedWeight:
    """Round-to-nearest with each group's range shrink chosen by the output error ``(W-Q) H_g (W-Q)ᵀ``."""
    w = w.detach().float()
    bounds = group_bounds(w.shape[1], grid.group_size)
    codes = torch.empty(w.shape, dtype=torch.uint8)
    scales = torch.empty(w.shape[0], len(bounds))
    zeros = torch.empty(w.shape[0], len(bounds))
    shrinks = torch.linspace(1.0, min_shrink, steps + 1) if grid.mse_search else torch.ones(1)
    rows = torch.arange(w.shape[0])
    for k, (s, e) in enumerate(bounds):
        wg, Hg = w[:, s:e], H[s:e, s:e].float()
        scale, zero = fit_params(wg, grid, shrinks[:, None])  # (S, rows)
        best_err, best = None, None
        for j in range(len(shrinks)):
            q = quantize_codes(wg, scale[j], zero[j], grid.maxq)
            d = (q - zero[j][:, None]) * scale[j][:, None] - wg
            err = ((d @ Hg) * d).sum(1)
            if best_err is None:
                best_err, best = err, torch.zeros_like(rows)
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best = torch.where(better, torch.full_like(best, j), best)
        sc, z = scale[best, rows], zero[best, rows]
        codes[:, s:e] = quantize_codes(wg, sc, z, grid.maxq).to(torch.uint8)
        scales[:, k], zeros[:, k] = sc, z
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)


def _rtn_fake(w: torch.Tensor, grid: GridConfig) -> torch.Tensor:
    out = torch.empty_like(w)
    for s, e in group_bounds(w.shape[1], grid.group_size):
        scale, zero = fit_params(w[:, s:e], grid)
        out[:, s:e] = (quantize_codes(w[:, s:e], scale, zero, grid.maxq) - zero[:, None]) * scale[:, None]
    return out


def _w_mean(w: torch.Tensor, group_size: int | None) -> torch.Tensor:
    """Mean over rows of |w| normalised by each group's max (the reference's weight statistic)."""
    out = torch.empty_like(w)
    for s, e in group_bounds(w.shape[1], group_size):
        g = w[:, s:e].abs()
        out[:, s:e] = g / g.amax(dim=1, keepdim=True).clamp(min=1e-8)
    return out.mean(0)


def _llama_groups(block: nn.Module) -> list[tuple[nn.Module, list[str], str]]:
    """(op that feeds, linears it feeds, what to judge: 'block' | 'mlp' | a linear name)."""
    need = [
        "input_layernorm",
        "post_attention_layernorm",
        "self_attn.q_proj",
        "self_attn.k_proj",
        "self_attn.v_proj",
        "self_attn.o_proj",
        "mlp.gate_proj",
        "mlp.up_proj",
        "mlp.down_proj",
    ]
    have = {n for n, _ in block.named_modules()}
    missing = [n for n in need if n not in have]
    if missing:
        raise UnsupportedModelError(
            f"AWQ knows the Llama block layout; {type(block).__name__} lacks {', '.join(missing)}. "
            "Use GPTQ or RTN for this architecture."
        )
    g = block.get_submodule
    groups = [(g("input_layernorm"), ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"], "block")]
    if g("self_attn.v_proj").weight.shape == g("self_attn.o_proj").weight.shape:
        groups.append((g("self_attn.v_proj"), ["self_attn.o_proj"], "self_attn.o_proj"))
    groups.append((g("post_attention_layernorm"), ["mlp.gate_proj", "mlp.up_proj"], "mlp"))
    groups.append((g("mlp.up_proj"), ["mlp.down_proj"], "mlp.down_proj"))
    return groups


def _scale_prev(prev: nn.Module, s: torch.Tensor) -> None:
    if isinstance(prev, nn.Linear):
        prev.weight.data.div_(s[:, None])
        if prev.bias is not None:
            prev.bias.data.div_(s)
    else:  # a norm with a per-channel weight
        prev.weight.data.div_(s)
        if getattr(prev, "bias", None) is not None:
            prev.bias.data.div_(s)


@torch.no_grad()
def _awq_block(block: nn.Module, data: BlockData, names: list[str], config: AWQConfig) -> None:
    groups = [(p, [n for n in lins if n in names], j) for p, lins, j in _llama_groups(block)]
    groups = [gr for gr in groups if gr[1]]
    # The scale search runs on the first ``search_samples`` sequences; the Gram matrices below use all of them.
    kept, count = [], 0
    for h, kw in zip(data.hidden, data.kwargs):
        if count >= config.search_samples:
            break
        take = min(h.shape[0], config.search_samples - count)
        kept.append((h[:take], slice_kwargs(kw, take)))
        count += take
    sub = BlockData([h for h, _ in kept], [kw for _, kw in kept])
    for prev, lins, judge in groups:
        first = block.get_submodule(lins[0])
        xs: list[torch.Tensor] = []
        sub.feed(block, first, lambda x: xs.append(x.reshape(-1, x.shape[-1])))
        x = torch.cat(xs)
        x_mean = x.abs().mean(0)
        weights = [block.get_submodule(n).weight for n in lins]
        w_mean = _w_mean(torch.cat(weights, 0), config.grid.group_size)
        judge_mod = block if judge == "block" else block.get_submodule(judge)
        if judge == "block":
            ref = sub.run(block)
            run = lambda: sub.run(block)  # noqa: E731
        else:
            # The MLP and a single Linear both read exactly the captured input x.
            ref = [judge_mod(x)]
            run = lambda: [judge_mod(x)]  # noqa: E731
        originals = [w.detach().clone() for w in weights]
        best_err, best_s = float("inf"), torch.ones_like(x_mean)
        for r in range(config.n_grid):
            ratio = r / config.n_grid
            s = (x_mean.pow(ratio) / w_mean.pow(1 - ratio).clamp(min=1e-4)).clamp(min=1e-4)
            s = s / (s.max() * s.min()).sqrt()
            for w, w0 in zip(weights, originals):
                w.data.copy_(_rtn_fake(w0 * s, config.grid) / s)
            out = run()
            err = sum(((o - f) ** 2).mean().item() for o, f in zip(out, ref))
            if err < best_err:
                best_err, best_s = err, s
        for w, w0 in zip(weights, originals):
            w.data.copy_(w0 * best_s)
        _scale_prev(prev, best_s)
    if config.then_gptq:
        gcfg = GPTQConfig(grid=config.grid, batch_size=config.batch_size)
        quantize_block(block, data, names, gcfg)
        return
    # Gram matrices of every selected Linear's input on all sequences, with the scales applied.
    for n in names:
        lin = block.get_submodule(n)
        acc = hessian_accumulator(lin.in_features)
        data.feed(block, lin, lambda x: accumulate(acc, x))
        H = acc["H"] / max(acc["n"], 1)
        grid = config.grid if config.clip_search else config.grid.replace(mse_search=False)
        replace_linear(block, n, output_search(lin.weight, H, grid))


@torch.no_grad()
def quantize_awq(
    model: nn.Module, config: AWQConfig | dict | None, ids: torch.Tensor, *, inplace: bool = False, checkpoint_dir=None
) -> nn.Module:
    """AWQ-quantize the selected Linears of a Llama-family decoder on calibration ids ``(N, L)``.

    The scales are folded into the preceding norms / Linears, so the returned
    model has the same structure (with :class:`QuantLinear` layers) and no extra ops.
    """
    config = coerce(AWQConfig, config)
    model = target(model, inplace)
    chosen = list(selected_linears(model, config))  # names: replaced float weights must be freed
    prefix, process = _block_process(model, config)
    sequential(
        model,
        ids,
        process,
        config.batch_size,
        checkpoint_dir,
        tag="awq" + config.model_dump_json(),
        save_block=quantized_state,
        load_block=lambda b, t, m: restore_quantized(b, t, m, "checkpoint"),
        description="AWQ",
    )
    from slimtorch.quantize.wgrid import rtn_weight

    for n in chosen:
        if not n.startswith(prefix + "."):
            replace_linear(model, n, rtn_weight(model.get_submodule(n).weight, config.grid))
    return model


def _block_process(model: nn.Module, config: AWQConfig):
    """(blocks' prefix, ``process(i, block, data)`` for block ``i``): the in-memory and streamed paths share it."""
    from slimtorch.models.llm import decoder_blocks

    chosen = list(selected_linears(model, config))
    prefix, _ = decoder_blocks(model)

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        mine = [n[len(f"{prefix}.{i}.") :] for n in chosen if n.startswith(f"{prefix}.{i}.")]
        if mine:
            _awq_block(block, data, mine, config)

    return prefix, process


@torch.no_grad()
def quantize_awq_streamed(
    source,
    out_dir,
    config: AWQConfig | dict | None,
    ids: torch.Tensor,
    checkpoint_dir=None,
    attn_implementation: str | None = None,
):
    """AWQ of the causal LM in folder ``source`` without loading it, one block in memory at a time.

    The same codes, scales and zeros as :func:`quantize_awq` (see
    :func:`slimtorch.quantize.gptq.quantize_gptq_streamed` for the arguments). Returns ``out_dir``.
    """
    from slimtorch.core.streamed import calibrate_streamed
    from slimtorch.models.llm import decoder_blocks
    from slimtorch.quantize.qlinear import quantized_tensors
    from slimtorch.quantize.wgrid import rtn_weight

    config = coerce(AWQConfig, config)

    def outside(model: nn.Module):  # selected Linears outside the blocks: round-to-nearest, as in memory
        prefix, _ = decoder_blocks(model)
        return {
            n: lambda name, w, b: quantized_tensors(name, rtn_weight(w, config.grid), b)
            for n in selected_linears(model, config)
            if not n.startswith(prefix + ".")
        }

    return calibrate_streamed(
        source,
        out_dir,
        ids,
        lambda model: _block_process(model, config)[1],
        quantized_state,
        outside=outside,
        batch_size=config.batch_size,
        tag="awq" + config.model_dump_json(),
        checkpoint_dir=checkpoint_dir,
        attn_implementation=attn_implementation,
        description="AWQ (streamed)",
    )
