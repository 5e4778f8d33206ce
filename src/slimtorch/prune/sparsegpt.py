"""SparseGPT (Frantar & Alistarh 2023, "SparseGPT: Massive Language Models Can Be Accurately Pruned in One-Shot").

For a Linear with calibration inputs ``X`` SparseGPT minimises ``‖W X - Ŵ X‖²``
over sparse ``Ŵ``, column by column, as Optimal Brain Surgeon with a fixed order:
when column ``j`` loses its pruned weights, the error is spread over the columns
not yet visited through the inverse Hessian ``H⁻¹`` (``H = X Xᵀ``), so the kept
weights absorb what the pruned ones did. Implemented from the paper and its
reference code:

* the upper Cholesky factor of ``(H + λI)⁻¹`` with ``λ = damp · mean(diag H)``,
  whose rows are exactly the OBS updates of the sequential elimination;
* adaptive mask selection per block of ``block_size`` (128) columns: inside the
  block, the weights of lowest saliency ``w² / [H⁻¹]_jj²`` go, chosen *after* the
  earlier blocks' updates (exactly ``round(sparsity · rows · cols)`` per block);
  for N:M, per M columns inside the block, per row;
* lazy batch updates: the block's error reaches later columns in one product;
* the joint sparse + quantized mode (the paper's §3.5, ``grid``): each kept weight
  is also rounded to the grid as its column is visited, and the error of both
  is propagated (GPTQ and SparseGPT in one pass). The group's scale/zero are fitted
  at the group's start on the updated weights, with the pruned ones already at 0.
  Pruned weights get the code of the zero point, which dequantizes to exactly 0.0
  on an integer zero point (asymmetric: the range always contains 0; symmetric: the
  mid code); the result is :class:`~slimtorch.quantize.qlinear.QuantLinear` layers.

Block by block (:mod:`slimtorch.core.blockwise`), with GPTQ's true-sequential
input sets: later Linears and blocks are calibrated on what the pruned ones produce.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, input_hooks, sequential
from slimtorch.core.errors import ConfigError
from slimtorch.prune.lm_common import CalibratedPruneConfig, block_names, decoder_linears
from slimtorch.prune.refit import refit_weight
from slimtorch.quantize.gptq import accumulate, hessian_accumulator, input_sets
from slimtorch.quantize.qlinear import quantized_state, replace_linear, restore_quantized
from slimtorch.quantize.weight_only import coerce, target
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    group_bounds,
    quantize_codes,
    search_params,
)


class SparseGPTConfig(CalibratedPruneConfig):
    """SparseGPT settings.

    Attributes:
        damp: added to ``diag H`` as a fraction of its mean (the paper: 0.01).
        block_size: columns per adaptive mask selection and lazy update (the paper: 128).
            With a grouped ``grid`` the blocks are the quantization groups instead.
        grid: quantize the kept weights too (joint mode): bits, group size, symmetry.
            ``None``: prune only, float weights.
        refit: keep SparseGPT's mask, then re-solve the kept weights exactly
            (:mod:`slimtorch.prune.refit`) instead of keeping the OBS sweep's values,
            which only moved the columns right of each pruned one. Float only (not with ``grid``).
    """

    damp: float = pydantic.Field(0.01, gt=0, le=1)
    block_size: int = pydantic.Field(128, ge=1)
    grid: GridConfig | None = None

    @pydantic.model_validator(mode="after")
    def _blocks_tile_nm(self):
        nm = self.nm
        size = self.grid.group_size if self.grid is not None and self.grid.group_size else self.block_size
        if nm is not None and size % nm[1]:
            field = "grid.group_size" if self.grid is not None and self.grid.group_size else "block_size"
            raise ConfigError(
                f"'{field}' = {size} is not a multiple of M={nm[1]} of pattern {self.pattern!r}: "
                "an N:M group must not straddle two column blocks",
                field=field,
            )
        if self.refit and self.grid is not None:
            raise ConfigError(
                "'refit' re-solves float weights after the mask is fixed, which would move the quantized "
                "weights of 'grid' off their grid; use one of them (or quantize the refit model afterwards)",
                field="refit",
            )
        return self


def column_blocks(cols: int, config: SparseGPTConfig) -> list[tuple[int, int]]:
    """Column ranges visited as one block; grouped grids use their groups so each group is fitted once."""
    if config.grid is not None and config.grid.group_size is not None:
        return group_bounds(cols, config.grid.group_size)
    return group_bounds(cols, config.block_size)


def _inverse_hessian_factor(H: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of ``(H + damp · mean(diag H) · I)⁻¹``."""
    H = H + damp * torch.mean(torch.diag(H)) * torch.eye(H.shape[0], dtype=H.dtype)
    L = torch.linalg.cholesky(H)
    return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)


@torch.no_grad()
def sparsegpt_weight(
    w: torch.Tensor, H: torch.Tensor, config: SparseGPTConfig, name: str = "layer"
) -> tuple[torch.Tensor, torch.Tensor, QuantizedWeight | None]:
    """SparseGPT of one weight ``w (out, in)`` given its inputs' Gram matrix ``H (in, in)`` (any positive scale).

    With ``config.refit`` the kept weights are then re-solved exactly for the mask
    (:func:`~slimtorch.prune.refit.refit_weight`, from the dense ``w``); ``name`` labels its progress.

    Returns:
        ``(new weight (out, in) float32 with pruned entries 0, keep mask, codes or None)``;
        the codes (joint mode) dequantize to the new weight.
    """
    H0 = H  # the refit's: the inputs as they are (no stand-in variance for dead ones)
    W = w.detach().clone().float()
    H = H.detach().clone().float()
    rows, cols = W.shape
    # Inputs that are always 0 carry no information: their weights cannot matter.
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    hdiag = torch.diag(H).clone()
    Hinv = _inverse_hessian_factor(H, config.damp)
    grid = config.grid
    blocks = column_blocks(cols, config)
    params = None
    if grid is not None and grid.group_size is None:
        # One group per row: fitted once on the original row (the mask is not known yet).
        params = [search_params(W, grid, hdiag / hdiag.mean())] * len(blocks)
    # Transposed: a column is a contiguous row, which the per-column updates touch.
    WT, keepT, params = _sweep(W.T.contiguous(), Hinv, hdiag, blocks, config, params)
    W, keep = WT.T.contiguous(), keepT.T.contiguous()
    if config.refit:
        return refit_weight(w, keep, H0, config.refit_damp, name), keep, None
    if grid is None:
        return W, keep, None
    codes = torch.empty(rows, cols, dtype=torch.uint8)
    for (i1, i2), (scale, zero) in zip(blocks, params):
        codes[:, i1:i2] = quantize_codes(W[:, i1:i2], scale, zero, grid.maxq).to(torch.uint8)
    ngroups = 1 if grid.group_size is None else len(blocks)  # per channel: every block shared one fit
    scales = torch.stack([p[0] for p in params[:ngroups]], dim=1)
    zeros = torch.stack([p[1] for p in params[:ngroups]], dim=1)
    qw = QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)
    return qw.dequantize(), keep, qw


def _sweep(
    WT: torch.Tensor,
    Hinv: torch.Tensor,
    hdiag: torch.Tensor,
    blocks: list[tuple[int, int]],
    config: SparseGPTConfig,
    params: list | None,
):
    """The column sweep on ``WT (in, out)``: mask, (quantize,) compensate; returns (new WT, keep WT, group params).

    The per-column operations are small, so they run on one thread (with two shared
    cores, OpenMP's hand-off costs more than it saves); the lazy block update is one
    large product and gets every thread back.
    """
    nm, grid = config.nm, config.grid
    sparsity = config.target_sparsity
    keepT = torch.ones_like(WT, dtype=torch.bool)
    fitted = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for b, (i1, i2) in enumerate(blocks):
            W1 = WT[i1:i2].clone()
            Q1 = torch.zeros_like(W1)
            Err1 = torch.zeros_like(W1)
            Hinv1 = Hinv[i1:i2, i1:i2]
            d = torch.diag(Hinv1)
            pruned = torch.zeros_like(W1, dtype=torch.bool)
            if nm is None:
                # Adaptive mask: the lowest OBS saliencies w²/[H⁻¹]² of the whole block, after earlier updates.
                saliency = (W1**2 / d[:, None] ** 2).reshape(-1)
                k = round(sparsity * saliency.numel())
                pruned.view(-1)[torch.sort(saliency, stable=True).indices[:k]] = True
            if grid is not None:
                if params is None:  # this group's range, from its updated weights with the pruned ones at 0
                    cw = hdiag[i1:i2] / hdiag[i1:i2].mean()
                    scale, zero = search_params(W1.masked_fill(pruned, 0.0).T, grid, cw)
                else:
                    scale, zero = params[b]
                _check_zero_exact(zero, grid)
                fitted.append((scale, zero))
            for i in range(i2 - i1):
                if nm is not None and i % nm[1] == 0:
                    m = nm[1]
                    sal = W1[i : i + m] ** 2 / d[i : i + m, None] ** 2
                    lowest = torch.topk(sal, m - nm[0], dim=0, largest=False).indices
                    pruned[i : i + m].scatter_(0, lowest, True)
                col = W1[i]
                q = col.masked_fill(pruned[i], 0.0)
                if grid is not None:
                    q = (torch.clamp(torch.round(q / scale) + zero, 0, grid.maxq) - zero) * scale
                Q1[i] = q
                err = (col - q) / d[i]
                # OBS update of the block's remaining columns (row i of the factor).
                W1[i:].addr_(Hinv1[i, i:], err, alpha=-1)
                Err1[i] = err
            WT[i1:i2] = Q1
            keepT[i1:i2] = ~pruned
            # Lazy batch update: this block's error reaches every later column in one product.
            torch.set_num_threads(threads)
            WT[i2:] -= Hinv[i1:i2, i2:].T @ Err1
            torch.set_num_threads(1)
    finally:
        torch.set_num_threads(threads)
    return WT, keepT, fitted


def _check_zero_exact(zero: torch.Tensor, grid: GridConfig) -> None:
    # Pruned weights are stored as the zero point's code; that is exactly 0.0 only on an integer code in range.
    if not (torch.equal(zero, zero.round()) and bool(((zero >= 0) & (zero <= grid.maxq)).all())):
        raise ConfigError(
            "joint sparse + quantized mode needs an integer zero point inside the code range, "
            "so that a pruned weight dequantizes to exactly 0.0",
            field="grid",
        )


def prune_block(block: nn.Module, data: BlockData, names: list[str], config: SparseGPTConfig) -> None:
    """SparseGPT on the Linears ``names`` of one block, given the block's calibration inputs.

    Linears reading one tensor (q/k/v; gate/up) share a Hessian. With ``true_sequential``
    each set's Hessian is gathered after the earlier sets were pruned (the forward stops
    at the set's input); otherwise all are gathered from the dense block in one pass.
    """
    sets = input_sets(block, data, names)
    mods = {n: block.get_submodule(n) for n in names}
    if config.true_sequential:
        for k, group in enumerate(sets):
            data.settle(block, [mods[n] for g in sets[k:] for n in g])  # reuse what is final (same values)
            acc = hessian_accumulator(mods[group[0]].in_features)
            data.feed(block, mods[group[0]], lambda x, acc=acc: accumulate(acc, x))
            _solve(block, mods, group, acc, config)
        return
    accs = {g[0]: hessian_accumulator(mods[g[0]].in_features) for g in sets}
    with input_hooks({g[0]: mods[g[0]] for g in sets}, lambda n, x: accumulate(accs[n], x)):
        data.run(block)
    for group in sets:
        _solve(block, mods, group, accs[group[0]], config)


def _solve(block: nn.Module, mods: dict[str, nn.Module], group: list[str], acc: dict, config: SparseGPTConfig) -> None:
    for n in group:
        if acc["n"] == 0:
            raise ConfigError(
                f"'{n}' is never called when the block runs, so SparseGPT has no inputs for it; "
                "add it to layers: {exclude: [...]}",
                field="layers.exclude",
            )
        W, _, qw = sparsegpt_weight(mods[n].weight, acc["H"] / acc["n"], config, n)
        if qw is not None:
            replace_linear(block, n, qw)
            del mods[n]  # the float Linear is out of the block: let its weight go
        else:
            mods[n].weight.copy_(W.to(mods[n].weight.dtype))


@torch.no_grad()
def prune_sparsegpt(
    model: nn.Module,
    config: SparseGPTConfig | dict | None,
    ids: torch.Tensor,
    *,
    inplace: bool = False,
    checkpoint_dir=None,
) -> nn.Module:
    """SparseGPT-prune (and, with ``config.grid``, quantize) the decoder Linears on calibration ids ``(N, L)``.

    Args:
        config: a :class:`SparseGPTConfig` or its dict (``None``: 50 % unstructured, float).
        inplace: change ``model`` itself instead of a copy.
        checkpoint_dir: resumable state (see :func:`slimtorch.core.blockwise.sequential`).

    Returns:
        The model with pruned weights exactly zero; in joint mode its selected Linears are
        :class:`~slimtorch.quantize.qlinear.QuantLinear` whose pruned codes equal the zero point.
    """
    config = coerce(SparseGPTConfig, config)
    model = target(model, inplace)
    io = {}
    if config.grid is not None:
        io = {"save_block": quantized_state, "load_block": lambda b, t, m: restore_quantized(b, t, m, "checkpoint")}
    return sequential(
        model,
        ids,
        _block_process(model, config),
        config.batch_size,
        checkpoint_dir,
        tag="sparsegpt" + config.model_dump_json(),
        description="SparseGPT",
        **io,
    )


def _block_process(model: nn.Module, config: SparseGPTConfig):
    """``process(i, block, data)`` pruning block ``i``'s selected Linears.

    The in-memory and streamed paths share it.
    """
    prefix, chosen = decoder_linears(model, config)
    chosen = dict.fromkeys(chosen)  # names only: replaced float weights (joint mode) must be freed

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        mine = block_names(prefix, i, chosen)
        if mine:
            prune_block(block, data, mine, config)

    return process


@torch.no_grad()
def prune_sparsegpt_streamed(
    source,
    out_dir,
    config: SparseGPTConfig | dict | None,
    ids: torch.Tensor,
    checkpoint_dir=None,
    attn_implementation: str | None = None,
):
    """SparseGPT (and, with ``config.grid``, quantization) of the causal LM in folder ``source``, one block at a time.

    The same weights as :func:`prune_sparsegpt` (see
    :func:`slimtorch.quantize.gptq.quantize_gptq_streamed` for the arguments); the folder
    reloads with :func:`~slimtorch.quantize.qlinear.load_quantized_lm`. Returns ``out_dir``.
    """
    from slimtorch.core.streamed import calibrate_streamed

    config = coerce(SparseGPTConfig, config)
    return calibrate_streamed(
        source,
        out_dir,
        ids,
        lambda model: _block_process(model, config),
        quantized_state,
        batch_size=config.batch_size,
        tag="sparsegpt" + config.model_dump_json(),
        checkpoint_dir=checkpoint_dir,
        attn_implementation=attn_implementation,
        description="SparseGPT (streamed)",
    )
