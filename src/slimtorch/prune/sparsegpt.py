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
from slimtorch.prune.lm_common import LMPruneConfig, block_names, decoder_linears
from slimtorch.quantize.gptq import accumulate, hessian_accumulator, input_sets
from slimtorch.quantize.qlinear import quantized_state, replace_linear, restore_quantized
from slimtorch.quantize.weight_only import coerce, target
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    fake_quant_group,
    group_bounds,
    quantize_codes,
    search_params,
)


class SparseGPTConfig(LMPruneConfig):
    """SparseGPT settings.

    Attributes:
        damp: added to ``diag H`` as a fraction of its mean (the paper: 0.01).
        block_size: columns per adaptive mask selection and lazy update (the paper: 128).
            With a grouped ``grid`` the blocks are the quantization groups instead.
        grid: quantize the kept weights too (joint mode): bits, group size, symmetry.
            ``None``: prune only, float weights.
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
            raise ConfigError(f"'{field}' = {size} is not a multiple of M={nm[1]} of pattern {self.pattern!r}: "
                              "an N:M group must not straddle two column blocks", field=field)
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
def sparsegpt_weight(w: torch.Tensor, H: torch.Tensor, config: SparseGPTConfig
                     ) -> tuple[torch.Tensor, torch.Tensor, QuantizedWeight | None]:
    """SparseGPT of one weight ``w (out, in)`` given its inputs' Gram matrix ``H (in, in)`` (any positive scale).

    Returns:
        ``(new weight (out, in) float32 with pruned entries 0, keep mask, codes or None)``;
        the codes (joint mode) dequantize to the new weight.
    """
    W = w.detach().clone().float()
    H = H.detach().clone().float()
    rows, cols = W.shape
    # Inputs that are always 0 carry no information: their weights cannot matter.
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    hdiag = torch.diag(H).clone()
    Hinv = _inverse_hessian_factor(H, config.damp)
    nm, grid = config.nm, config.grid
    sparsity = config.target_sparsity
    keep = torch.ones(rows, cols, dtype=torch.bool)
    blocks = column_blocks(cols, config)
    scales = torch.empty(rows, len(blocks)) if grid is not None else None
    zeros = torch.empty(rows, len(blocks)) if grid is not None else None
    channel_params = None
    if grid is not None and grid.group_size is None:
        # One group per row: fitted once on the original row (the mask is not known yet).
        channel_params = search_params(W, grid, hdiag / hdiag.mean())
    for b, (i1, i2) in enumerate(blocks):
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        pruned = torch.zeros_like(W1, dtype=torch.bool)
        if nm is None:
            # Adaptive mask: the lowest OBS saliencies of the whole block, after earlier blocks' updates.
            saliency = (W1 ** 2 / d[None, :] ** 2).reshape(-1)
            k = round(sparsity * saliency.numel())
            pruned.view(-1)[torch.sort(saliency, stable=True).indices[:k]] = True
        if grid is not None:
            if channel_params is not None:
                scale, zero = channel_params
            else:  # this group's range, from its updated weights with the pruned ones at 0
                scale, zero = search_params(W1.masked_fill(pruned, 0.0), grid, hdiag[i1:i2] / hdiag[i1:i2].mean())
            _check_zero_exact(zero, grid)
            scales[:, b], zeros[:, b] = scale, zero
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                m = nm[1]
                sal = W1[:, i : i + m] ** 2 / d[None, i : i + m] ** 2
                lowest = torch.topk(sal, m - nm[0], dim=1, largest=False).indices
                pruned.scatter_(1, i + lowest, True)
            col = W1[:, i]
            q = col.masked_fill(pruned[:, i], 0.0)
            if grid is not None:
                q = fake_quant_group(q[:, None], scale, zero, grid.maxq)[:, 0]
            Q1[:, i] = q
            err = (col - q) / d[i]
            # OBS update of the block's remaining columns (row i of the factor).
            W1[:, i:] -= err[:, None] @ Hinv1[i, i:][None, :]
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        keep[:, i1:i2] = ~pruned
        # Lazy batch update: this block's error reaches every later column at once.
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    if grid is None:
        return W, keep, None
    codes = torch.empty(rows, cols, dtype=torch.uint8)
    for b, (i1, i2) in enumerate(blocks):
        codes[:, i1:i2] = quantize_codes(W[:, i1:i2], scales[:, b], zeros[:, b], grid.maxq).to(torch.uint8)
    if grid.group_size is None:
        scales, zeros = scales[:, :1], zeros[:, :1]  # one group per row: every block used the same parameters
    qw = QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)
    return qw.dequantize(), keep, qw


def _check_zero_exact(zero: torch.Tensor, grid: GridConfig) -> None:
    # Pruned weights are stored as the zero point's code; that is exactly 0.0 only on an integer code in range.
    if not (torch.equal(zero, zero.round()) and bool(((zero >= 0) & (zero <= grid.maxq)).all())):
        raise ConfigError("joint sparse + quantized mode needs an integer zero point inside the code range, "
                          "so that a pruned weight dequantizes to exactly 0.0", field="grid")


def prune_block(block: nn.Module, data: BlockData, names: list[str], config: SparseGPTConfig) -> None:
    """SparseGPT on the Linears ``names`` of one block, given the block's calibration inputs."""
    sets = input_sets(block, data, names) if config.true_sequential else [names]
    for group in sets:
        mods = {n: block.get_submodule(n) for n in group}
        # With true_sequential a set shares one input, hence one Hessian; otherwise one Hessian per Linear.
        accs = {n: hessian_accumulator(m.in_features) for n, m in mods.items()}
        hooked = {group[0]: mods[group[0]]} if config.true_sequential else mods
        with input_hooks(hooked, lambda n, x: accumulate(accs[n], x)):
            data.run(block)
        for n, lin in mods.items():
            acc = accs[group[0]] if config.true_sequential else accs[n]
            if acc["n"] == 0:
                raise ConfigError(f"'{n}' is never called when the block runs, so SparseGPT has no inputs "
                                  "for it; add it to 'exclude'", field="exclude")
            W, _, qw = sparsegpt_weight(lin.weight, acc["H"] / acc["n"], config)
            if qw is not None:
                replace_linear(block, n, qw)
            else:
                lin.weight.copy_(W.to(lin.weight.dtype))


@torch.no_grad()
def prune_sparsegpt(model: nn.Module, config: SparseGPTConfig | dict | None, ids: torch.Tensor,
                    inplace: bool = False, checkpoint_dir=None) -> nn.Module:
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
    prefix, chosen = decoder_linears(model, config)

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        mine = block_names(prefix, i, chosen)
        if mine:
            prune_block(block, data, mine, config)

    io = {}
    if config.grid is not None:
        io = {"save_block": quantized_state,
              "load_block": lambda b, t, m: restore_quantized(b, t, m, "checkpoint")}
    return sequential(model, ids, process, config.batch_size, checkpoint_dir,
                      tag="sparsegpt" + config.model_dump_json(), description="SparseGPT", **io)
