"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Why hand-written: ONNX Runtime's ``quantize_static`` rounds weights to nearest and
has no adaptive rounding; torchao has none for convolutions either. AIMET has one,
and ``aimet-torch`` is on PyPI, but it pulls a large stack (torchvision, cvxpy,
bokeh, holoviews, tensorboard, pandas, scikit-learn) into an install pinned to the
CPU torch wheel, and it rounds onto AIMET's own simulated grid, not onto the grid
ONNX Runtime later recomputes from the weights. The method itself is small.

What it does, per Conv1d / Conv2d / Linear (grouped and depthwise convs included),
in the order the forward pass calls them:

1. The layer's grid is the one ONNX Runtime uses for s8 weights: symmetric, one
   scale per output channel (or per tensor), ``scale = max|w| / qmax`` with
   ``qmax = 127`` (64 with ``reduce_range``: ORT's reduced s8 range is [-64, 64]).
2. Each weight is ``scale * (floor(w / scale) + h(V))`` with the rectified sigmoid
   ``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``, zeta 1.1, gamma -0.1,
   ``V`` initialised so that ``h(V)`` equals the fractional part (the float weight).
3. ``V`` minimises ``||W~ x_q - W x_f||^2`` (squared error summed over output
   channels, averaged over sampled output positions) plus
   ``lambda * sum(1 - |2 h(V) - 1|^beta)``, which pushes every ``h`` to 0 or 1;
   ``beta`` anneals linearly from 20 to 2 after a 20 % warm-up without the
   regulariser, lambda 0.01, Adam lr 1e-2 (the paper's settings). ``x_q`` is the
   layer's input in the model whose earlier layers are already rounded, ``x_f`` the
   float model's (the paper's "asymmetric" reconstruction, which lets a layer
   absorb the error of the layers before it).
4. The weight becomes exactly ``scale * q`` with integer ``q`` in [-qmax, qmax]. The
   element(s) holding each channel's ``max|w|`` are pinned to round-to-nearest
   (they sit exactly on ±qmax), so the channel's max, hence the scale ORT
   recomputes at export, is unchanged, and ORT's round-to-nearest reproduces ``q``.

Cost on a 2-core CPU: a conv becomes a matrix problem on a fixed, seeded sample of
output positions (``samples`` patch rows, gathered directly rather than through
``F.unfold``, which would materialise every position of a 112x112 feature map).
With more rows than weights per output channel the loss is a quadratic form in
``dW = W~ - W``: ``dW G dW^T + 2 <dW, C> + r`` with ``G = X_q^T X_q / n``, so an
iteration costs ``out x d^2`` instead of ``n x out x d``; grouped convs are batched
per group. Everything is deterministic (seeded sampling, full-batch gradients).

The model should have its BatchNorms folded (BNs found after convs are folded
first, exactly), since the exporter folds them and the folded weights are what ORT
rounds.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import LayerSelection, select
from slimtorch.core.progress import track
from slimtorch.deploy.graph import conv_bn_pairs
from slimtorch.deploy.grid import grid_scale, ort_qmax

ZETA, GAMMA = 1.1, -0.1
LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)


# ---------------------------------------------------------------- capturing layer inputs
class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layer's input is captured (saves the rest)."""


def _call_order(model: nn.Module, names: list[str], batch: tuple[torch.Tensor, ...]) -> tuple[list[str], dict]:
    """Layers in the order ``forward`` first calls them, and how often each is called per pass."""
    order: list[str] = []
    calls: dict[str, int] = {}

    def hook(name):
        def fn(_m, _i, _o):
            calls[name] = calls.get(name, 0) + 1
            if calls[name] == 1:
                order.append(name)

        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            model(*batch)
    finally:
        for h in handles:
            h.remove()
    return order, calls


def _conv2d_view(mod: nn.Module, x: torch.Tensor):
    """Input padded as the conv pads it, as 4-D, plus kernel / stride / dilation as 2-tuples."""
    if isinstance(mod.padding, str) or mod.padding_mode != "zeros":
        # 'same' / 'valid' or a non-zero padding mode: the module's own pad amounts and mode
        mode = "constant" if mod.padding_mode == "zeros" else mod.padding_mode
        x = F.pad(x, mod._reversed_padding_repeated_twice, mode=mode)
    else:
        x = F.pad(x, [p for p in reversed(mod.padding) for _ in range(2)])
    if isinstance(mod, nn.Conv1d):  # a 1-D conv is a 2-D conv over a height-1 map
        return x.unsqueeze(2), (1, *mod.kernel_size), (1, *mod.stride), (1, *mod.dilation)
    return x, tuple(mod.kernel_size), tuple(mod.stride), tuple(mod.dilation)


def output_positions(mod: nn.Module, x: torch.Tensor) -> int:
    """Output positions (rows of the layer's matrix problem) that input ``x`` yields."""
    if isinstance(mod, nn.Linear):
        return x.numel() // x.shape[-1]
    xp, (kh, kw), (sh, sw), (dh, dw) = _conv2d_view(mod, x)
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    return xp.shape[0] * oh * ow


def input_rows(mod: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of the layer's input matrix: ``[len(idx), in_channels * prod(kernel)]``.

    Same rows and column order as ``F.unfold`` followed by a transpose (columns in the
    weight's ``(in, kh, kw)`` order), but only at the sampled positions.
    """
    if isinstance(mod, nn.Linear):
        return x.reshape(-1, x.shape[-1])[idx]
    xp, (kh, kw), (sh, sw), (dh, dw) = _conv2d_view(mod, x)
    oh = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    ow = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    b, r = idx // (oh * ow), idx % (oh * ow)
    hi = (r // ow)[:, None] * sh + torch.arange(kh) * dh
    wi = (r % ow)[:, None] * sw + torch.arange(kw) * dw
    p = xp[b[:, None, None], :, hi[:, :, None], wi[:, None, :]]  # [n, kh, kw, C]: advanced dims first
    return p.permute(0, 3, 1, 2).reshape(len(idx), -1)


def _out_rows(mod: nn.Module, out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` of the layer's output, bias removed: ``[len(idx), out_channels]``."""
    rows = (
        out.reshape(-1, out.shape[-1]) if isinstance(mod, nn.Linear) else out.movedim(1, -1).reshape(-1, out.shape[1])
    )
    rows = rows[idx]
    return rows - mod.bias.detach() if mod.bias is not None else rows


@dataclass
class _Rows:
    """Which output positions each layer is reconstructed on: the same in the float and the rounded model.

    ``per_call`` rows per call of the layer per batch, drawn with a generator seeded by
    (layer, batch, call), so two models with equal shapes draw the same rows.
    """

    per_call: dict[str, int]
    seeds: dict[str, int]

    def pick(self, name: str, mod: nn.Module, x: torch.Tensor, batch: int, call: int) -> torch.Tensor:
        n, k = output_positions(mod, x), self.per_call[name]
        if n <= k:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seeds[name] * 1_000_003 + batch * 7919 + call)
        return torch.randperm(n, generator=g)[:k].sort().values


def _run(model: nn.Module, batches, hooks: dict[str, Any], pre: bool, state: dict) -> None:
    """Run ``model`` on every batch with ``hooks`` installed; a hook raising :class:`_Stop` ends that batch."""
    reg = "register_forward_pre_hook" if pre else "register_forward_hook"
    handles = [getattr(model.get_submodule(n), reg)(fn) for n, fn in hooks.items()]
    try:
        for i, b in enumerate(batches):
            state.update(batch=i, calls={})
            try:
                with torch.no_grad():
                    model(*b)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()


def _float_targets(ref: nn.Module, names: list[str], calls: dict[str, int], batches, rows: _Rows):
    """Float outputs (bias removed) of ``names`` at their sampled rows, one pass per batch for all of them.

    The float model never changes, so one pass serves a whole chunk of layers; a layer's
    input rows are not needed from it, since ``W x_f`` is just its output.
    """
    got: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    stop = all(calls[n] == 1 for n in names)  # names are in call order: the last one ends the useful part
    state: dict[str, Any] = {}

    def hook(name):
        def fn(m, args, out):
            c = state["calls"][name] = state["calls"].get(name, 0) + 1
            got[name].append(_out_rows(m, out.detach().float(), rows.pick(name, m, args[0], state["batch"], c - 1)))
            if stop and name == names[-1]:
                raise _Stop

        return fn

    _run(ref, batches, {n: hook(n) for n in names}, False, state)
    return {n: torch.cat(v) for n, v in got.items()}


def _inputs(model: nn.Module, name: str, calls: int, batches, rows: _Rows) -> torch.Tensor:
    """Sampled input rows of ``name`` in the (partly rounded) model: ``[n, in_channels * prod(kernel)]``."""
    got: list[torch.Tensor] = []
    state: dict[str, Any] = {}

    def pre(m, args):
        c = state["calls"][name] = state["calls"].get(name, 0) + 1
        x = args[0].detach().float()
        got.append(input_rows(m, x, rows.pick(name, m, x, state["batch"], c - 1)))
        if calls == 1:
            raise _Stop  # the rest of the forward pass is not needed

    _run(model, batches, {name: pre}, True, state)
    return torch.cat(got)


def _chunks(
    order: list[str], model: nn.Module, rows: _Rows, calls: dict[str, int], n_batches: int, budget: int = 256 << 20
) -> list[list[str]]:
    """Consecutive layers whose float targets fit in ``budget`` bytes together (one float pass per chunk)."""
    out: list[list[str]] = [[]]
    used = 0
    for name in order:
        mod = model.get_submodule(name)
        size = (
            rows.per_call[name]
            * calls[name]
            * n_batches
            * (mod.out_features if isinstance(mod, nn.Linear) else mod.out_channels)
            * 4
        )
        if out[-1] and used + size > budget:
            out.append([])
            used = 0
        out[-1].append(name)
        used += size
    return out


# ---------------------------------------------------------------- the per-layer problem
@dataclass
class _Problem:
    """Reconstruction error of one layer as a function of ``dW`` (shape ``[groups, out_g, d]``).

    ``sse(dW)`` is the squared output error summed over output channels and averaged
    over the sampled rows. Gram form (``gram``, ``cross``, ``r2``) when rows outnumber
    the weights per channel, direct form (``x``, ``r``) otherwise.
    """

    n: int
    gram: torch.Tensor | None = None
    cross: torch.Tensor | None = None
    r2: torch.Tensor | None = None
    x: torch.Tensor | None = None
    r: torch.Tensor | None = None

    def sse(self, dw: torch.Tensor) -> torch.Tensor:
        if self.gram is not None:
            g, c = self.gram.to(dw.dtype), self.cross.to(dw.dtype)
            return ((dw @ g) * dw).sum() + 2 * (dw * c).sum() + self.r2.to(dw.dtype)
        e = self.x.to(dw.dtype) @ dw.transpose(1, 2) + self.r.to(dw.dtype)
        return e.pow(2).sum() / self.n


def _problem(xq: torch.Tensor, target: torch.Tensor, w: torch.Tensor) -> _Problem:
    """From the rounded model's input rows ``[n, groups*d]``, the float outputs ``[n, out]`` (bias
    removed) and the float weight ``[groups, out_g, d]``."""
    groups, out_g, d = w.shape
    n = xq.shape[0]
    xq = xq.view(n, groups, d).transpose(0, 1)  # [groups, n, d]
    # output error the earlier (already rounded) layers leave at this layer, before its own rounding
    r = xq @ w.transpose(1, 2) - target.view(n, groups, out_g).transpose(0, 1)  # [groups, n, out_g]
    if n > d:
        return _Problem(
            n=n, gram=xq.transpose(1, 2) @ xq / n, cross=r.transpose(1, 2) @ xq / n, r2=r.double().pow(2).sum() / n
        )
    return _Problem(n=n, x=xq.contiguous(), r=r)


def _h(v: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


def _h_inverse(rest: torch.Tensor) -> torch.Tensor:
    p = ((rest - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


def _pinned(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The element(s) holding each channel's (or the tensor's) max |w|: they define the scale ORT computes."""
    a = w.abs().reshape(w.shape[0], -1)
    amax = a.amax(1, keepdim=True) if per_channel else a.max().expand(w.shape[0], 1)
    return (a == amax).reshape(w.shape)


def _optimise(
    prob: _Problem,
    w: torch.Tensor,
    scale: torch.Tensor,
    pinned: torch.Tensor,
    qmax: int,
    iters: int,
    lam: float,
    warmup: float,
    beta: tuple[float, float],
    lr: float,
) -> torch.Tensor:
    """Integer ``q`` (same shape as ``w``: ``[groups, out_g, d]``) chosen by AdaRound."""
    ws = w / scale
    floor = ws.floor()
    rest = ws - floor
    nearest = rest.round()
    v = _h_inverse(rest).requires_grad_(True)
    opt = torch.optim.Adam([v], lr=lr)
    start = int(warmup * iters)
    for t in range(iters):
        h = torch.where(pinned, nearest, _h(v))
        dw = scale * (floor + h).clamp(-qmax, qmax) - w
        loss = prob.sse(dw)
        if t >= start:
            rel = (t - start) / max(1, iters - start)
            b = beta[1] + (beta[0] - beta[1]) * (1 - rel)
            # pinned elements hold 0 or 1, so their regulariser term is already 0
            loss = loss + lam * (1 - (2 * h - 1).abs().pow(b)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        up = torch.where(pinned, nearest, (v >= 0).to(w.dtype))  # h(V) >= 0.5 exactly when V >= 0
        return (floor + up).clamp(-qmax, qmax)


# ---------------------------------------------------------------- driver
def _select(model: nn.Module, layers: LayerSelection | dict | None) -> list[str]:
    return list(select(model, layers, LAYER_TYPES))


def _check_batches(batches) -> list[tuple[torch.Tensor, ...]]:
    batches = [tuple(b) if isinstance(b, (tuple, list)) else (b,) for b in (batches or [])]
    if not batches or not batches[0] or batches[0][0].shape[0] == 0:
        raise ConfigError(
            "adaround: calibration batches are empty; give at least one batch of model inputs "
            "(a few hundred examples are typical)",
            field="batches",
        )
    return batches


def _round_layer(
    mod: nn.Module, xq: torch.Tensor, target: torch.Tensor, per_channel: bool, qmax: int, opts: dict
) -> dict[str, Any]:
    """Round ``mod.weight`` onto the grid with AdaRound; returns the layer's statistics."""
    w0 = mod.weight.detach().float()
    groups = mod.groups if isinstance(mod, (nn.Conv1d, nn.Conv2d)) else 1
    w = w0.reshape(groups, w0.shape[0] // groups, -1)
    scale = grid_scale(w0, per_channel, qmax).view(groups, -1, 1)
    pinned = _pinned(w0, per_channel).reshape(w.shape)
    prob = _problem(xq, target, w)
    q = _optimise(prob, w, scale, pinned, qmax, **opts)
    q_rtn = (w / scale).round().clamp(-qmax, qmax)
    out = w0.shape[0]
    mse_rtn = float(prob.sse((scale * q_rtn - w).double())) / out
    mse_ada = float(prob.sse((scale * q - w).double())) / out
    with torch.no_grad():
        mod.weight.copy_((scale * q).reshape(w0.shape).to(mod.weight.dtype))
    return {"rows": prob.n, "mse_rtn": mse_rtn, "mse_adaround": mse_ada, "flipped": float((q != q_rtn).float().mean())}


def adaround_report(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    per_channel: bool = True,
    reduce_range: bool = False,
    iters: int = 500,
    samples: int = 8192,
    *,
    inplace: bool = False,
    layers: LayerSelection | dict | None = None,
    seed: int = 0,
    lam: float = 0.01,
    warmup: float = 0.2,
    beta: tuple[float, float] = (20.0, 2.0),
    lr: float = 1e-2,
) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`adaround`, also returning what it did (per layer: rows, MSE with RTN and AdaRound).

    The MSEs are the layer-output reconstruction errors on the sampled rows (squared
    error per output element, inputs from the already-rounded model, target from the
    float model) with round-to-nearest and with the chosen rounding.
    """
    batches = _check_batches(batches)
    if iters < 1 or samples < 1:
        raise ConfigError(f"adaround: iters and samples must be >= 1 (got {iters}, {samples})", field="iters")
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    if conv_bn_pairs(model):
        from slimtorch.deploy.fold import fold_conv_bn

        fold_conv_bn(model, inplace=True)  # the exporter folds them too: the folded weights are what ORT rounds
    ref = copy.deepcopy(model)  # the float model: targets
    order, calls = _call_order(model, _select(model, layers), batches[0])
    per_call = {n: max(1, math.ceil(samples / (len(batches) * calls[n]))) for n in order}
    rows = _Rows(per_call, {n: seed * 1000 + k for k, n in enumerate(order)})
    qmax = ort_qmax(reduce_range)
    opts = {"iters": iters, "lam": lam, "warmup": warmup, "beta": beta, "lr": lr}
    t0 = time.perf_counter()
    per_layer: dict[str, dict[str, Any]] = {}
    todo = [(chunk, name) for chunk in _chunks(order, model, rows, calls, len(batches)) for name in chunk]
    for chunk, name in track(todo, "AdaRound: layers rounded"):
        if name == chunk[0]:
            targets = _float_targets(ref, chunk, calls, batches, rows)  # one float pass per chunk of layers
        xq = _inputs(model, name, calls[name], batches, rows)
        per_layer[name] = _round_layer(model.get_submodule(name), xq, targets.pop(name), per_channel, qmax, opts)
    return model, _summary(per_layer, iters, samples, qmax, time.perf_counter() - t0)


def _summary(per_layer: dict, iters: int, samples: int, qmax: int, seconds: float) -> dict[str, Any]:
    rtn = [v["mse_rtn"] for v in per_layer.values()]
    ada = [v["mse_adaround"] for v in per_layer.values()]
    ratios = [a / r for a, r in zip(ada, rtn) if r > 0]
    return {
        "layers": len(per_layer),
        "iters": iters,
        "samples": samples,
        "qmax": qmax,
        "seconds": seconds,
        "mean_mse_rtn": sum(rtn) / max(1, len(rtn)),
        "mean_mse_adaround": sum(ada) / max(1, len(ada)),
        "mean_mse_ratio": sum(ratios) / max(1, len(ratios)),
        "per_layer": per_layer,
    }


def adaround(
    model: nn.Module,
    batches: list[tuple[torch.Tensor, ...]],
    per_channel: bool = True,
    reduce_range: bool = False,
    iters: int = 500,
    samples: int = 8192,
    *,
    inplace: bool = False,
    layers: LayerSelection | dict | None = None,
    seed: int = 0,
) -> nn.Module:
    """Round every Conv1d / Conv2d / Linear weight onto ONNX Runtime's s8 grid with AdaRound.

    Args:
        model: the float model (BN folded; BNs after convs are folded here otherwise).
        batches: calibration input batches (tuples of model inputs), e.g. from
            :func:`slimtorch.deploy.data.input_batches`.
        per_channel / reduce_range: the grid ORT will use (see :class:`Int8Config`).
        iters: optimisation steps per layer. samples: input rows (output positions) per layer.
        inplace: edit ``model`` itself instead of a deep copy.
        layers: ``{include: [...], exclude: [...]}`` (:class:`~slimtorch.core.layers.LayerSelection`):
            the layers to round (default: every supported layer).
        seed: seed of the row sampling.

    Returns:
        The model with each selected weight exactly ``scale * q``, integer ``q``, scale unchanged.

    Raises:
        ConfigError: empty ``batches``, non-positive ``iters`` / ``samples``, or a ``layers`` pattern that
            matches nothing.
    """
    return adaround_report(
        model, batches, per_channel, reduce_range, iters, samples, inplace=inplace, layers=layers, seed=seed
    )[0]
