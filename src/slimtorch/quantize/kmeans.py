"""k-means weight sharing with centroid fine-tuning (Han, Mao & Dally 2016, "Deep Compression", §3).

Per layer, the non-zero weights are clustered into k = 2^b groups by 1-D k-means;
each weight becomes its group's centroid. Pruned weights are not clustered and
stay exactly zero (zero is an implicit extra code), so a layer holds at most
2^b distinct non-zero values.

Fine-tuning: :class:`KMeansShare` is a parametrization ``w = table[indices]``
with ``table = [0, c_1..c_k]``; ``c`` is the only trainable tensor of the
weight and ``indices`` a buffer. Autograd's backward of indexing accumulates,
so ``dL/dc_k = sum of dL/dw over the weights in cluster k`` — exactly the
gradient of the paper's Figure 3.

1-D k-means is vectorised: with sorted centroids, the nearest centroid is found
by ``searchsorted`` on the midpoints between neighbours; centroid updates are
``index_add`` sums. Initialisations: ``linear`` (evenly spaced over
[min, max]; Han et al. found it best because it keeps the rare large weights),
``density`` (evenly spaced on the CDF) and ``kmeans++`` (Arthur & Vassilvitskii
2007, seeded).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.core.config import coerce
from slimtorch.core.layers import select
from slimtorch.core.progress import track
from slimtorch.quantize.config import KMeansConfig
from slimtorch.quantize.fake_quant import WeightFakeQuant
from slimtorch.quantize.layers import QUANTIZABLE, FilterFn, bits_for, check_per_layer, find_parametrization


def _init_centroids(v: torch.Tensor, k: int, init: str, gen: torch.Generator) -> torch.Tensor:
    """Initial centroids (float64, sorted) for the 1-D values ``v``."""
    v = v.double()
    if init == "linear":
        return torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    if init == "density":
        srt = v.sort().values
        pos = ((torch.arange(k, dtype=torch.float64) + 0.5) / k * (len(srt) - 1)).round().long()
        return srt[pos]
    # kmeans++: each new centroid drawn with probability ∝ squared distance to the nearest chosen one
    first = int(torch.randint(len(v), (1,), generator=gen))
    chosen = [float(v[first])]
    d2 = (v - chosen[0]) ** 2
    for _ in range(1, k):
        total = float(d2.sum())
        if total == 0.0:  # fewer distinct values than k: duplicates are harmless (clusters stay empty)
            chosen.append(chosen[-1])
            continue
        nxt = int(torch.multinomial(d2 / total, 1, generator=gen))
        chosen.append(float(v[nxt]))
        d2 = torch.minimum(d2, (v - chosen[-1]) ** 2)
    return torch.tensor(sorted(chosen), dtype=torch.float64)


def _assign(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids ``c`` for each value."""
    mids = (c[1:] + c[:-1]) / 2
    return torch.searchsorted(mids, v.contiguous())


def kmeans_1d(
    values: torch.Tensor, k: int, init: str = "linear", iters: int = 50, seed: int = 0, reseed_empty: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on 1-D data.

    Args:
        values: ``(n,)`` values, n >= 1.
        k: number of clusters.
        reseed_empty: move clusters left empty onto the worst-served values (see :func:`_reseed`);
            ``False`` is plain Lloyd as in the paper.

    Returns:
        ``(centroids (k,) float32 sorted, assignment (n,) int64 in [0, k))``. Clusters
        that end empty keep their last position (so at most k distinct values are used).
    """
    if values.numel() == 0:
        raise ValueError("k-means needs at least one value")
    v = values.detach().reshape(-1).double()
    gen = torch.Generator().manual_seed(seed)
    c = _init_centroids(v, k, init, gen)
    assign = _assign(v, c)
    for _ in range(iters):
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        reseeded = reseed_empty and _reseed(v, c, assign, counts)
        c, order = c.sort()
        assign = torch.argsort(order)[assign]  # relabel to the sorted order
        new = _assign(v, c)
        if torch.equal(new, assign) and not reseeded:
            break
        assign = new
    return c.float(), assign


def _reseed(v: torch.Tensor, c: torch.Tensor, assign: torch.Tensor, counts: torch.Tensor) -> bool:
    """Move empty clusters onto the worst-served values (in place); True if any moved.

    After pruning, a layer's weights have a hole around zero: linear
    initialisation puts many centroids there that never win a weight, wasting
    codes. Re-seeding them where the error is largest uses all 2^b codes.
    """
    empty = torch.nonzero(counts == 0).reshape(-1)
    if empty.numel() == 0:
        return False
    err = (v - c[assign]) ** 2
    worst = torch.argsort(err, descending=True)[: empty.numel()]
    worst = worst[err[worst] > 0]
    if worst.numel() == 0:
        return False
    c[empty[: worst.numel()]] = v[worst]
    return True


class KMeansShare(nn.Module):
    """Parametrization ``w = [0, codebook][indices]``: shared weights with trainable centroids.

    Attributes:
        codebook: ``(k,)`` trainable centroids.
        indices: buffer shaped like the weight; 0 = pruned (exact zero), i >= 1 = centroid i-1.
    """

    def __init__(self, codebook: torch.Tensor, indices: torch.Tensor, bits: int):
        super().__init__()
        self.bits = bits
        self.codebook = nn.Parameter(codebook.detach().float().clone())
        self.register_buffer("indices", indices.long().clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # the input weight is ignored on purpose: the centroids are the weight's only degrees of freedom
        table = torch.cat([self.codebook.new_zeros(1), self.codebook])
        return table[self.indices].to(w.dtype)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, k={self.codebook.numel()}"


def kmeans_share(
    model: nn.Module,
    config: KMeansConfig | dict | None = None,
    *,
    filter_fn: FilterFn | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Replace each selected layer's non-zero weights by 2^bits shared values (trainable centroids).

    Layers with no non-zero weight are skipped with a warning (or raise with
    ``empty_layers="error"``); :func:`kmeans_skipped` lists them afterwards. So are
    layers whose weight is tied to another module's (an output layer sharing the
    embedding table): sharing it would leave the other module on the float table.

    Returns:
        The model (a deep copy unless ``inplace``); fine-tune it with ``slimtorch.train.fit``
        to train the centroids.
    """
    cfg = coerce(KMeansConfig, config)
    out = model if inplace else copy.deepcopy(model)
    check_per_layer(out, cfg.per_layer)
    skipped, tied = [], _tied_weights(out)
    for name, module in track(
        list(select(out, cfg.layers, QUANTIZABLE, filter_fn=filter_fn).items()), "k-means: layers shared"
    ):
        if name in tied:
            skipped.append(name)
            warnings.warn(
                f"k-means sharing skipped layer '{name}': its weight is tied to '{tied[name]}' "
                "(sharing one side would untie them)",
                stacklevel=2,
            )
            continue
        if find_parametrization(module, KMeansShare) or find_parametrization(module, WeightFakeQuant):
            raise ValueError(f"layer '{name}' is already quantized / shared; start from the float (or pruned) model")
        w = module.weight.detach()
        nz = w != 0
        if not bool(nz.any()):
            if cfg.empty_layers == "error":
                raise ValueError(
                    f"layer '{name}' has no non-zero weight to share (fully pruned); "
                    "leave it out with layers: {exclude: [...]} or empty_layers='skip'"
                )
            skipped.append(name)
            continue
        bits = bits_for(name, cfg.bits, cfg.per_layer)
        centroids, assign = kmeans_1d(w[nz], 2**bits, cfg.init, cfg.iters, cfg.seed, cfg.reseed_empty)
        indices = torch.zeros(w.shape, dtype=torch.long)
        indices[nz] = assign + 1
        parametrize.register_parametrization(module, "weight", KMeansShare(centroids, indices, bits))
        if cfg.bias_bits is not None:
            _share_bias(module, cfg)
    if skipped:
        warnings.warn(f"k-means sharing skipped layers with no non-zero weight: {', '.join(skipped)}", stacklevel=2)
    out.slimtorch_kmeans_skipped = skipped  # plain attribute: not part of the state dict
    return out


def _share_bias(module: nn.Module, cfg: KMeansConfig) -> None:
    bias = getattr(module, "bias", None)
    if not isinstance(bias, torch.Tensor) or parametrize.is_parametrized(module, "bias"):
        return
    b = bias.detach()
    nz = b != 0
    if int(nz.sum()) <= 2**cfg.bias_bits:  # as many centroids as values: nothing to gain
        return
    centroids, assign = kmeans_1d(b[nz], 2**cfg.bias_bits, cfg.init, cfg.iters, cfg.seed, cfg.reseed_empty)
    indices = torch.zeros(b.shape, dtype=torch.long)
    indices[nz] = assign + 1
    parametrize.register_parametrization(module, "bias", KMeansShare(centroids, indices, cfg.bias_bits))


def _tied_weights(model: nn.Module) -> dict[str, str]:
    """Module name -> the other module sharing its ``weight`` Parameter object."""
    owners: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        w = module._parameters.get("weight") if hasattr(module, "_parameters") else None
        if isinstance(w, nn.Parameter):
            owners.setdefault(id(w), []).append(name)
    return {n: next(o for o in names if o != n) for names in owners.values() if len(names) > 1 for n in names}


def kmeans_skipped(model: nn.Module) -> list[str]:
    """Layers :func:`kmeans_share` left alone because they had no non-zero weight."""
    return list(getattr(model, "slimtorch_kmeans_skipped", []))


class SharedLayer(NamedTuple):
    """One k-means-shared weight: ``weight.flatten()[positions] = codebook[indices]``, zero elsewhere."""

    shape: tuple[int, ...]
    codebook: torch.Tensor  # (k,) float32
    indices: torch.Tensor  # (nnz,) int64 in [0, k)
    positions: torch.Tensor  # (nnz,) int64 flat row-major offsets, increasing
    mask: torch.Tensor  # bool, weight-shaped: True where a shared value is stored


def _shared_layer(km: KMeansShare) -> SharedLayer:
    flat = km.indices.reshape(-1)
    positions = torch.nonzero(flat, as_tuple=False).reshape(-1)
    return SharedLayer(
        tuple(km.indices.shape), km.codebook.detach().clone(), flat[positions] - 1, positions, km.indices != 0
    )


@torch.no_grad()
def shared_tensors(model: nn.Module) -> dict[str, SharedLayer]:
    """``{layer fqn: SharedLayer}`` for every k-means-shared layer weight (current, fine-tuned centroids)."""
    out = {}
    for name, module in model.named_modules():
        km = find_parametrization(module, KMeansShare)
        if km is not None:
            out[name] = _shared_layer(km)
    return out


@torch.no_grad()
def shared_biases(model: nn.Module) -> dict[str, SharedLayer]:
    """``{layer fqn: SharedLayer}`` for every bias shared with ``KMeansConfig.bias_bits``."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "bias"):
            km = next((p for p in module.parametrizations.bias if isinstance(p, KMeansShare)), None)
            if km is not None:
                out[name] = _shared_layer(km)
    return out


def to_shared_tensor(layer: SharedLayer):
    """Convert to :class:`slimtorch.encode.SharedTensor` (what the Huffman / ANS coders take)."""
    from slimtorch.encode.tensor import SharedTensor

    return SharedTensor(layer.shape, layer.codebook.numpy(), layer.indices.numpy(), layer.positions.numpy())


@torch.no_grad()
def shared_state(model: nn.Module) -> dict[str, Any]:
    """The model's folded state dict with every shared weight as a ``SharedTensor``.

    Ready for ``slimtorch.encode.pack_state`` / ``save_slim``: shared weights are
    entropy-coded (biases too when shared with ``bias_bits``), everything else is stored raw.
    """
    from slimtorch.io import effective_state_dict

    state: dict[str, Any] = dict(effective_state_dict(model))
    for name, layer in shared_tensors(model).items():
        state[f"{name}.weight" if name else "weight"] = to_shared_tensor(layer)
    for name, layer in shared_biases(model).items():
        state[f"{name}.bias" if name else "bias"] = to_shared_tensor(layer)
    return state
