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

from slimtorch.core.blockwise import BlockData, input_hooks, sequential
from slimtorch.quantize.qlinear import quantized_state, replace_linear, restore_quantized
from slimtorch.quantize.weight_only import WeightOnlyConfig, coerce, selected_linears, target
from slimtorch.quantize.wgrid import (
    GridConfig,
    QuantizedWeight,
    fake_quant_group,
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
    """

    damp: float = pydantic.Field(0.01, gt=0, le=1)
    act_order: bool = True
    block_size: int = pydantic.Field(128, ge=1)
    true_sequential: bool = True
    batch_size: int = pydantic.Field(8, ge=1)


def hessian_accumulator(cols: int) -> dict:
    return {"H": torch.zeros(cols, cols, dtype=torch.float64), "n": 0}


def accumulate(acc: dict, x: torch.Tensor) -> None:
    x = x.reshape(-1, x.shape[-1]).double()
    acc["H"] += x.T @ x
    acc["n"] += x.shape[0]


def gptq_weight(w: torch.Tensor, H: torch.Tensor, grid: GridConfig, damp: float = 0.01, act_order: bool = True,
                block_size: int = 128) -> QuantizedWeight:
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
    H += damp * torch.mean(torch.diag(H)) * torch.eye(cols)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w_col = W1[:, i]
            d = Hinv1[i, i]
            scale, zero = params[int(group_of[perm[i1 + i]])]
            q = fake_quant_group(w_col[:, None], scale, zero, grid.maxq)[:, 0]
            Q1[:, i] = q
            err = (w_col - q) / d
            W1[:, i:] -= err[:, None] @ Hinv1[i, i:][None, :]
            Err1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    Q = Q[:, torch.argsort(perm)]
    codes = torch.empty(rows, cols, dtype=torch.uint8)
    scales = torch.empty(rows, len(bounds))
    zeros = torch.empty(rows, len(bounds))
    for k, (s, e) in enumerate(bounds):
        scale, zero = params[k]
        codes[:, s:e] = quantize_codes(Q[:, s:e], scale, zero, grid.maxq).to(torch.uint8)
        scales[:, k], zeros[:, k] = scale, zero
    return QuantizedWeight(codes, scales, zeros, grid.bits, grid.group_size)


def input_sets(block: nn.Module, data: BlockData, names: list[str]) -> list[list[str]]:
    """Linears of the block grouped by the input tensor they read, in execution order (q/k/v, o, gate/up, down)."""
    order: list[tuple[str, int]] = []
    mods = {n: block.get_submodule(n) for n in names}
    seen: set[str] = set()

    def rec(n, x):
        if n not in seen:
            seen.add(n)
            order.append((n, id(x)))

    with input_hooks(mods, rec), torch.no_grad():
        block(data.hidden[0][:1], **_first(data.kwargs[0]))
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


def _first(kw: dict) -> dict:
    """Keyword arguments sliced to the first sequence (masks and position tensors have a batch dimension)."""
    out = {}
    for k, v in kw.items():
        if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] > 1:
            out[k] = v[:1]
        elif isinstance(v, tuple) and all(isinstance(t, torch.Tensor) for t in v):
            out[k] = tuple(t[:1] if t.dim() > 0 and t.shape[0] > 1 else t for t in v)
        else:
            out[k] = v
    return out


def quantize_block(block: nn.Module, data: BlockData, names: list[str], config: GPTQConfig,
                   method=gptq_weight) -> None:
    """GPTQ every Linear ``names`` of ``block`` on the block's calibration inputs (true-sequential sets)."""
    sets = input_sets(block, data, names) if config.true_sequential else [names]
    for group in sets:
        accs = {n: hessian_accumulator(block.get_submodule(n).in_features) for n in group}
        mods = {n: block.get_submodule(n) for n in group}
        with input_hooks(mods, lambda n, x: accumulate(accs[n], x)):
            data.run(block)
        for n in group:
            acc = accs[n]
            if acc["n"] == 0:
                qw = rtn_weight(mods[n].weight, config.grid)
            else:
                qw = method(mods[n].weight, acc["H"] / acc["n"], config.grid, config.damp, config.act_order,
                            config.block_size)
            replace_linear(block, n, qw)


@torch.no_grad()
def quantize_gptq(model: nn.Module, config: GPTQConfig | dict | None, ids: torch.Tensor, inplace: bool = False,
                  checkpoint_dir=None) -> nn.Module:
    """GPTQ-quantize the selected Linears of a decoder, block by block, on calibration ids ``(N, L)``.

    Linears outside the decoder blocks that are selected (e.g. ``lm_head`` when not
    excluded) are quantized by round-to-nearest on the same grid.
    """
    config = coerce(GPTQConfig, config)
    model = target(model, inplace)
    chosen = selected_linears(model, config)
    from slimtorch.models.llm import decoder_blocks

    prefix, _ = decoder_blocks(model)

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        mine = [n[len(f"{prefix}.{i}.") :] for n in chosen if n.startswith(f"{prefix}.{i}.")]
        if mine:
            quantize_block(block, data, mine, config)

    sequential(model, ids, process, config.batch_size, checkpoint_dir, tag="gptq" + config.model_dump_json(),
               save_block=quantized_state, load_block=lambda b, t, m: restore_quantized(b, t, m, "checkpoint"),
               description="GPTQ")
    for n in chosen:
        if not n.startswith(prefix + "."):
            replace_linear(model, n, rtn_weight(model.get_submodule(n).weight, config.grid))
    return model
