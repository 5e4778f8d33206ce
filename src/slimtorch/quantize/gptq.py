"""GPTQ (Frantar et al. 2023): weight-only quantization that corrects each column's rounding error.

For a Linear with inputs ``X``, GPTQ minimises ``||W X - Q X||²`` column by
column: after rounding column ``j`` it spreads the error over the columns not
yet quantized, weighted by the inverse Hessian ``H = 2 X Xᵀ`` (Optimal Brain
Surgeon with a fixed order). Implemented from the paper and the reference code:

* Cholesky form of ``H⁻¹`` with damping ``damp · mean(diag H)``;
* lazy batch updates (blocks of ``block_size`` columns);
* act-order (columns by decreasing ``diag H``) with *static groups*: group
  parameters are fitted on the original weights in their original contiguous
  layout, so the file needs no column permutation (``g_idx``) and a partial last
  group (576 = 4.5 × 128) is just a shorter group;
* ``mse_search`` grids: each group's range is shrunk where that lowers the
  Hessian-diagonal-weighted rounding error;
* true-sequential order inside a block: Linears that read the same input
  (q/k/v; gate/up) are quantized together, and the next set's Hessian is
  gathered with them already quantized.

Calibration is block by block (:mod:`slimtorch.core.blockwise`): peak memory is
one block's Hessians plus the calibration hidden states.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, input_hooks, probe, sequential
from slimtorch.quantize.qlinear import quantized_state, replace_linear, restore_quantized
from slimtorch.quantize.weight_only import WeightOnlyConfig, coerce, selected_linears, target
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    group_bounds,
    quantize_codes,
    rtn_weight,
    search_params,
)


class GPTQConfig(WeightOnlyConfig):
    """GPTQ settings.

    Attributes:
        damp: damping added to ``diag H`` as a fraction of its mean (the paper: 0.01).
        act_order: quantize columns by decreasing activation energy.
        block_size: columns per lazy batch update.
        true_sequential: gather each input set's Hessian after the previous sets were quantized.
        batch_size: calibration sequences per forward.
        per_layer_bits: bits by layer name or fnmatch pattern (mixed precision, e.g. from
            :func:`slimtorch.quantize.mixed_lm.choose_bits`); other layers use ``grid.bits``.
    """

    damp: float = pydantic.Field(0.01, gt=0, le=1)
    per_layer_bits: dict[str, int] = pydantic.Field(default_factory=dict)
    act_order: bool = True
    block_size: int = pydantic.Field(128, ge=1)
    true_sequential: bool = True
    batch_size: int = pydantic.Field(8, ge=1)


def hessian_accumulator(cols: int) -> dict:
    return {"H": torch.zeros(cols, cols, dtype=torch.float64), "n": 0}


def accumulate(acc: dict, x: torch.Tensor) -> None:
    # The batch product in float32 (fast), the running sum in float64 (many batches). Adding the float32
    # product in place is exact (every float32 is a float64) and spares a float64 copy of it.
    x = x.reshape(-1, x.shape[-1]).float()
    acc["H"] += x.T @ x
    acc["n"] += x.shape[0]


def gptq_weight(
    w: torch.Tensor,
    H: torch.Tensor,
    grid: GridConfig,
    damp: float = 0.01,
    act_order: bool = True,
    block_size: int = 128,
) -> QuantizedWeight:
    """GPTQ of one weight ``w (out, in)`` given the input Gram matrix ``H (in, in)`` (any positive scale)."""
    W = w.detach().clone().float()
    H = H.clone().float()
    rows, cols = W.shape
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    # Static groups: parameters from the original weights, weighted by diag H (what the output error sees).
    bounds = group_bounds(cols, grid.group_size)
    diag = torch.diag(H)
    params = [search_params(W[:, s:e], grid, diag[s:e] / diag[s:e].mean()) for s, e in bounds]
    group_of = torch.empty(cols, dtype=torch.long)
    for k, (s, e) in enumerate(bounds):
        group_of[s:e] = k
    perm = torch.argsort(diag, descending=True) if act_order else torch.arange(cols)
    W, H = W[:, perm], H[perm][:, perm]
    # Each column's scale and zero, in the permuted order (one gather instead of a lookup per column).
    col_scale = torch.stack([p[0] for p in params], 1)[:, group_of[perm]]
    col_zero = torch.stack([p[1] for p in params], 1)[:, group_of[perm]]
    maxq = grid.maxq
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = _column_loop(W, Hinv, col_scale, col_zero, maxq, block_size)
    Q = Q[:, torch.argsort(perm)]
    codes = torch.empty(rows, cols, dtype=torch.uint8)
    scales = torch.empty(rows, len(bounds))
    zeros = torch.empty(rows, len(bounds))
    for k, (s, e) in enumerate(bounds):
        scale, zero = params[k]
        codes[:, s:e] = quantize_codes(Q[:, s:e], scale, zero, grid.maxq).to(torch.uint8)
        scales[:, k], zeros[:, k] = scale, zero
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)


def _column_loop(W, Hinv, col_scale, col_zero, maxq: int, block_size: int) -> torch.Tensor:
    """GPTQ's quantize-and-compensate sweep over columns, with lazy batch updates.

    Works on transposed copies (a column is a contiguous row) and on one thread:
    the per-column operations are small, and with two cores shared they run faster
    without OpenMP's hand-off (the thread count is restored afterwards).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cols = W.shape[1]
        WT = W.T.contiguous()
        QT = torch.zeros_like(WT)
        ST, ZT = col_scale.T.contiguous(), col_zero.T.contiguous()
        for i1 in range(0, cols, block_size):
            i2 = min(i1 + block_size, cols)
            W1 = WT[i1:i2].clone()
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            S1, Z1, Q1 = ST[i1:i2], ZT[i1:i2], QT[i1:i2]
            d = torch.diagonal(Hinv1).tolist()
            # In place into the rows of Q1 / Err1 and one fused rank-1 update: the same values as
            # the textbook expressions, with a third fewer temporaries per column.
            for i in range(i2 - i1):
                w, sc, z, q, err = W1[i], S1[i], Z1[i], Q1[i], Err1[i]
                torch.div(w, sc, out=q).round_().add_(z).clamp_(0, maxq).sub_(z).mul_(sc)
                torch.sub(w, q, out=err).div_(d[i])
                W1[i:].addr_(Hinv1[i, i:], err, alpha=-1)
            torch.set_num_threads(threads)
            WT[i2:] -= Hinv[i1:i2, i2:].T @ Err1
            torch.set_num_threads(1)
        return QT.T
    finally:
        torch.set_num_threads(threads)


def input_sets(block: nn.Module, data: BlockData, names: list[str]) -> list[list[str]]:
    """Linears of the block grouped by the input tensor they read, in execution order (q/k/v, o, gate/up, down)."""
    order: list[tuple[str, int]] = []
    mods = {n: block.get_submodule(n) for n in names}
    seen: set[str] = set()
    alive: list[torch.Tensor] = []

    def rec(n, x):
        if n not in seen:
            seen.add(n)
            # The input object itself, kept alive until the grouping is done: an id of a temporary (such as
            # a detached view) is new for every Linear, and a freed tensor's id can be reused by the next.
            alive.append(x)
            order.append((n, id(x)))

    probe(block, data, [m.register_forward_pre_hook(lambda _m, inp, n=n: rec(n, inp[0])) for n, m in mods.items()])
    sets: list[list[str]] = []
    last = None
    for n, key in order:
        if key == last:
            sets[-1].append(n)
        else:
            sets.append([n])
            last = key
    sets += [[n] for n in names if n not in seen]  # never called: quantized from weights alone
    return sets


def quantize_block(
    block: nn.Module,
    data: BlockData,
    names: list[str],
    config: GPTQConfig,
    method=gptq_weight,
    grids: dict[str, GridConfig] | None = None,
) -> None:
    """GPTQ every Linear ``names`` of ``block`` on the block's calibration inputs.

    Linears reading the same tensor share one Hessian. With ``true_sequential`` each
    set's Hessian is gathered after the earlier sets were quantized (the forward
    stops at the set's input); otherwise all are gathered in one pass.
    """
    sets = input_sets(block, data, names)
    mods = {n: block.get_submodule(n) for n in names}

    def solve(group: list[str], acc: dict) -> None:
        for n in group:
            grid = (grids or {}).get(n, config.grid)
            if acc["n"] == 0:
                qw = rtn_weight(mods[n].weight, grid)
            else:
                qw = method(mods[n].weight, acc["H"] / acc["n"], grid, config.damp, config.act_order, config.block_size)
            replace_linear(block, n, qw)
            del mods[n]  # the float Linear is out of the block: let its weight go (the rest of the block's passes)

    if config.true_sequential:
        for k, group in enumerate(sets):
            # what the earlier sets feed is final now: its outputs are reused, not recomputed (same values)
            data.settle(block, [mods[n] for g in sets[k:] for n in g])
            acc = hessian_accumulator(mods[group[0]].in_features)
            data.feed(block, mods[group[0]], lambda x: accumulate(acc, x))
            solve(group, acc)
        return
    accs = {g[0]: hessian_accumulator(mods[g[0]].in_features) for g in sets}
    with input_hooks({g[0]: mods[g[0]] for g in sets}, lambda n, x: accumulate(accs[n], x)):
        data.run(block)
    for group in sets:
        solve(group, accs[group[0]])


@torch.no_grad()
def quantize_gptq(
    model: nn.Module, config: GPTQConfig | dict | None, ids: torch.Tensor, *, inplace: bool = False, checkpoint_dir=None
) -> nn.Module:
    """GPTQ-quantize the selected Linears of a decoder, block by block, on calibration ids ``(N, L)``.

    Linears outside the decoder blocks that are selected (e.g. ``lm_head`` when not
    excluded) are quantized by round-to-nearest on the same grid.
    """
    config = coerce(GPTQConfig, config)
    model = target(model, inplace)
    # Names only: holding the modules would keep every replaced float weight alive (2x the model's memory).
    chosen = list(selected_linears(model, config))
    prefix, process = _block_process(model, config)
    sequential(
        model,
        ids,
        process,
        config.batch_size,
        checkpoint_dir,
        tag="gptq" + config.model_dump_json(),
        save_block=quantized_state,
        load_block=lambda b, t, m: restore_quantized(b, t, m, "checkpoint"),
        description="GPTQ",
    )
    for n in chosen:
        if not n.startswith(prefix + "."):
            replace_linear(model, n, rtn_weight(model.get_submodule(n).weight, _grid_for(n, config)))
    return model


def _grid_for(name: str, config: GPTQConfig) -> GridConfig:
    from slimtorch.quantize.layers import bits_for

    bits = bits_for(name, config.grid.bits, config.per_layer_bits)
    return config.grid if bits == config.grid.bits else config.grid.replace(bits=bits)


def _block_process(model: nn.Module, config: GPTQConfig):
    """(blocks' prefix, ``process(i, block, data)`` quantizing block ``i``'s selected Linears): both paths share it."""
    from slimtorch.models.llm import decoder_blocks

    chosen = list(selected_linears(model, config))
    prefix, _ = decoder_blocks(model)

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        head = f"{prefix}.{i}."
        mine = [n[len(head) :] for n in chosen if n.startswith(head)]
        grids = {n[len(head) :]: _grid_for(n, config) for n in chosen if n.startswith(head)}
        if mine:
            quantize_block(block, data, mine, config, grids=grids)

    return prefix, process


@torch.no_grad()
def quantize_gptq_streamed(
    source,
    out_dir,
    config: GPTQConfig | dict | None,
    ids: torch.Tensor,
    checkpoint_dir=None,
    attn_implementation: str | None = None,
):
    """GPTQ of the causal LM in folder ``source`` without loading it: one block in memory at a time.

    Reads each decoder block from ``source``'s safetensors, quantizes it exactly as
    :func:`quantize_gptq` would (same codes, scales and zeros), writes it out and frees
    it (:func:`slimtorch.core.streamed.calibrate_streamed`). Peak memory is one block
    plus the calibration hidden states, not the model.

    Args:
        source: a Hugging Face causal-LM folder with safetensors weights (e.g.
            :func:`slimtorch.models.llm.hf_directory`).
        out_dir: the new quantized model folder (as :func:`~slimtorch.quantize.qlinear.save_quantized_lm`
            writes; reload with :func:`~slimtorch.quantize.qlinear.load_quantized_lm`).
        ids: calibration token ids ``(N, L)``.
        checkpoint_dir: resumable state; a rerun with the same tokens and config continues after
            the last finished block.
        attn_implementation: the attention kernel the blocks run with (default: transformers'
            default, as :func:`~slimtorch.models.llm.load_causal_lm` loads); the result equals
            :func:`quantize_gptq` on a model loaded with the same kernel.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    from slimtorch.core.streamed import calibrate_streamed
    from slimtorch.quantize.qlinear import quantized_tensors

    config = coerce(GPTQConfig, config)

    def outside(model: nn.Module):
        # selected Linears outside the blocks (an lm_head that is not excluded): round-to-nearest, as in memory
        from slimtorch.models.llm import decoder_blocks

        prefix, _ = decoder_blocks(model)
        names = [n for n in selected_linears(model, config) if not n.startswith(prefix + ".")]
        return {n: lambda name, w, b: quantized_tensors(name, rtn_weight(w, _grid_for(name, config)), b) for n in names}

    return calibrate_streamed(
        source,
        out_dir,
        ids,
        lambda model: _block_process(model, config)[1],
        quantized_state,
        outside=outside,
        batch_size=config.batch_size,
        tag="gptq" + config.model_dump_json(),
        checkpoint_dir=checkpoint_dir,
        attn_implementation=attn_implementation,
        description="GPTQ (streamed)",
    )
