"""Exact refit of the kept weights once a pruning mask is fixed.

The idea of Boža 2024, "Fast and Effective Weight Update for Pruned Large Language Models".

Wanda never changes a kept weight, and SparseGPT's OBS steps only move the
columns to the *right* of each pruned one (its fixed elimination order), so in
neither case are the surviving weights the best ones for the mask. Given the
mask, the best ones are a least-squares problem per output row ``r`` with kept
inputs ``S``::

    min over ŵ (zero off S):  (W_r - ŵ) (H + λI) (W_r - ŵ)ᵀ,   H = X Xᵀ
    =>  ŵ_S = (W_r (H + λI))_S (H_SS + λI)⁻¹

that is the layer's output error ``‖W_r X - ŵ X‖²`` on the calibration inputs plus
``λ‖W_r - ŵ‖²``, with ``λ = damp · mean(diag H)``. The damping pulls towards the
*dense* weights (not towards 0): it is the same damped objective SparseGPT's
inverse Hessian minimises, so on that objective the refit is never worse than
SparseGPT's own update for the same mask, only exact. Boža solves it with ADMM to
scale to large layers; at the sizes here (a few hundred to a few thousand kept
inputs per row) a direct solve is exact and fast: one Cholesky factorisation per
row, batched over rows with the same number of kept inputs (rows are sorted by
that count and solved in chunks sized to a memory budget, shorter rows padded
with identity rows that solve to 0, so the mask is kept exactly).

Used by :mod:`slimtorch.prune.wanda` and :mod:`slimtorch.prune.sparsegpt` with
``refit: true`` (:class:`~slimtorch.prune.lm_common.CalibratedPruneConfig`), on the
same Hessian SparseGPT gathers; with true-sequential calibration the inputs are
those the already-pruned earlier Linears of the block produce.
"""

from __future__ import annotations

import torch

from slimtorch.core.progress import track

# The chunk of rows solved together holds at most this many bytes of (rows, k, k) float32 systems.
CHUNK_BYTES = 64 * 2**20
# Show a progress bar for a layer only when its factorisations are long (about 10 s on one core).
PROGRESS_FLOPS = 2e11


@torch.no_grad()
def refit_weight(
    weight: torch.Tensor, keep: torch.Tensor, H: torch.Tensor, damp: float, name: str = "layer"
) -> torch.Tensor:
    """The kept weights re-solved for the mask: ``argmin (W - Ŵ)(H + λI)(W - Ŵ)ᵀ`` with ``Ŵ`` zero where not kept.

    Args:
        weight: the *dense* weight ``(out, in)`` before pruning (the target).
        keep: bool mask ``(out, in)``, True = kept.
        H: the inputs' Gram matrix ``(in, in)`` (any positive scale, e.g. ``X Xᵀ / n``).
        damp: ``λ`` as a fraction of ``mean(diag H)``; > 0.
        name: the layer, for the progress bar of long layers.

    Returns:
        ``(out, in)`` float32, exactly 0 where ``keep`` is False.
    """
    W = weight.detach().float()
    keep = keep.to(torch.bool)
    rows, cols = W.shape
    if keep.shape != W.shape or H.shape != (cols, cols):
        raise ValueError(f"refit: weight {tuple(W.shape)}, keep {tuple(keep.shape)} and H {tuple(H.shape)} disagree")
    H = H.detach().double()
    scale = torch.diag(H).mean()
    out = torch.zeros_like(W)
    if scale <= 0:  # no input ever non-zero: any weights give the same (zero) output; keep the kept ones
        return W * keep
    Hd = H + damp * scale * torch.eye(cols, dtype=H.dtype)
    rhs = (W.double() @ Hd).float()  # (W (H + λI)) for every row; each row's system reads its kept entries
    Hd = Hd.float()
    counts = keep.sum(1)
    order = torch.argsort(counts, descending=True, stable=True)
    # Per row, the kept columns first (ascending), then the pruned ones: a prefix of length count is S.
    cols_first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)
    chunks, s = [], 0
    while s < rows:
        k = int(counts[order[s]])
        n = max(1, CHUNK_BYTES // max(1, 4 * k * k))
        chunks.append((s, min(rows, s + n), k))
        s += n
    flops = sum((e - s) * k**3 / 3 for s, e, k in chunks)
    it = track(chunks, f"refit {name}") if flops > PROGRESS_FLOPS else chunks
    for s, e, k in it:
        if k == 0:
            continue
        r = order[s:e]
        idx = cols_first[r, :k]  # (c, k)
        valid = torch.arange(k)[None, :] < counts[r][:, None]  # (c, k): False = padding of a shorter row
        A = Hd[idx[:, :, None], idx[:, None, :]]  # (c, k, k)
        A.masked_fill_(~(valid[:, :, None] & valid[:, None, :]), 0.0)
        A.diagonal(dim1=1, dim2=2).masked_fill_(~valid, 1.0)  # padding: x = 0 (its right-hand side is 0)
        b = rhs[r].gather(1, idx).masked_fill_(~valid, 0.0)
        L, info = torch.linalg.cholesky_ex(A)
        if bool(info.any()):  # not positive definite in float32 (λ too small for the inputs' range)
            x = torch.linalg.solve(A.double(), b.double().unsqueeze(-1)).squeeze(-1).float()
        else:
            # two triangular solves: much faster than cholesky_solve on a batch of single right-hand sides
            y = torch.linalg.solve_triangular(L, b.unsqueeze(-1), upper=False)
            x = torch.linalg.solve_triangular(L.mT, y, upper=True).squeeze(-1)
        out[r] = torch.zeros(e - s, cols).scatter_(1, idx, x.masked_fill_(~valid, 0.0))
    return out
