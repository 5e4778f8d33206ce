"""Channel dependencies read from the model's real execution (its autograd graph).

One forward pass with gradients on builds the autograd graph of what the model
really ran, whatever Python control flow its ``forward`` has. Walking that graph
from the outputs back to the input (``grad_fn.next_functions``) gives every
tensor's producer. We give every output channel of a producer layer (Conv,
Linear, Embedding) an integer id and propagate the ids forward through the ops:

* elementwise ops, pooling, BN, depthwise convs keep the ids of their input;
* ``a + b`` / ``a * b`` *unite* the ids of both operands position by position
  (residual additions couple the channels of every summed tensor);
* ``torch.cat`` along channels concatenates the id lists (offset mapping);
* ``flatten`` / ``view`` repeats each channel id over its ``H*W`` features, so a
  Linear after it knows that channel ``c`` is features ``c*H*W … (c+1)*H*W-1``;
* ops whose effect on channels is unknown raise :class:`UnsupportedModelError`
  naming the layer; ops that need the channel count unchanged (LayerNorm,
  softmax over channels, hard-coded slices) *fix* those ids (never pruned).

A union-find over the ids then yields the coupled units (one unit = channels
that must go together) and groups of units sharing layers — Torch-Pruning's
"group" (Fang et al., 2023, "DepGraph: Towards Any Structural Pruning"),
written from scratch on ids rather than on module edges.
"""

from __future__ import annotations

import fnmatch
import math
import re

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.prune.structured.units import Graph, Member, UnionFind, Val

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_FIXING_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_KNOWN = (*_CONV, nn.Linear, *_BN, *_FIXING_NORMS, nn.Embedding)
PRODUCERS = (*_CONV, nn.Linear, nn.Embedding)  # layers whose output channels a selection may keep

_PASS = {
    "Relu",
    "Hardtanh",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Silu",
    "Hardswish",
    "Hardsigmoid",
    "LeakyRelu",
    "Elu",
    "Neg",
    "Exp",
    "Log",
    "Abs",
    "Clone",
    "Clamp",
    "ClampMin",
    "ClampMax",
    "Sqrt",
    "Rsqrt",
    "Reciprocal",
    "NativeDropout",
    "ToCopy",
    "Alias",
    "Mish",
    "Softplus",
    "Expand",
    "Prelu",
    "MaxPool2DWithIndices",
    "MaxPool3DWithIndices",
    "AvgPool2D",
    "AvgPool3D",
    "AdaptiveAvgPool2D",
    "AdaptiveAvgPool3D",
    "AdaptiveMaxPool2D",
    "AdaptiveMaxPool3D",
    "UpsampleNearest2D",
    "UpsampleBilinear2D",
    "UpsampleNearest1D",
    "UpsampleLinear1D",
}
_SCALAR = {
    "AddBackward1",
    "SubBackward1",
    "MulBackward1",
    "DivBackward1",
    "RsubBackward1",
    "PowBackward0",
    "DivBackward2",
    "DivBackward3",
}
_BINARY = {"Add", "Sub", "Mul", "Div", "Maximum", "Minimum", "Rsub"}
_VIEW = {"View", "ReshapeAlias", "UnsafeView", "Squeeze", "Unsqueeze", "Flatten"}
_INPLACE_DUNDER = {"__iadd__", "__isub__", "__imul__", "__itruediv__", "__ifloordiv__", "__ipow__", "__setitem__"}
_SLICING = {"Slice", "Select", "Split", "SplitWithSizes", "Unbind", "Narrow", "Index", "IndexSelect", "Gather"}


def _op(node) -> str:
    return re.sub(r"Backward\d*$", "", type(node).__name__)


def _norm_dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


class _Namer(TorchFunctionMode):
    """Remembers which module's forward created each autograd node, for error messages.

    Also refuses in-place ops on a tensor another op already read: the graph would
    still be right, but such code usually means a branch sees modified values.
    """

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.where: dict[object, tuple[str, str]] = {}
        self._read: dict[int, torch.Tensor] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        inplace = (name.endswith("_") and not name.startswith("_")) or name in _INPLACE_DUNDER or kwargs.get("inplace")
        first = args[0] if args else None
        if inplace and isinstance(first, torch.Tensor) and first.requires_grad and id(first) in self._read:
            if self._read[id(first)] is first:
                raise UnsupportedModelError(
                    f"layer '{self.stack[-1] or '<root>'}': in-place '{name}' modifies a tensor that another "
                    "operation already used (a shared tensor); structured pruning cannot tell which channels "
                    "each branch sees. Use the out-of-place op (e.g. inplace=False, x = x + y)."
                )
        for i, a in enumerate(args):
            if isinstance(a, torch.Tensor) and not (inplace and i == 0):
                self._read[id(a)] = a
        out = func(*args, **kwargs)
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor) and t.grad_fn is not None and t.grad_fn not in self.where:
                self.where[t.grad_fn] = (self.stack[-1] or "<root>", name)
        return out


def _key(t: torch.Tensor):
    return (t.grad_fn, t.output_nr) if t.grad_fn is not None else None


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, tuple | list):
        return [t for o in obj for t in _tensors(o)]
    return []


def matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def classifier_name(model: nn.Module) -> str | None:
    """The last ``nn.Linear`` registered in the model (the logits layer in every zoo model)."""
    last = None
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = name
    return last


def build_graph(model: nn.Module, example_input, ignored: tuple[str, ...] = (), frozen: tuple[str, ...] = ()) -> Graph:
    """Run ``model(example_input)`` with autograd on and derive the coupled channel groups.

    Args:
        model: any module; its mode (train/eval) and ``requires_grad`` flags are restored.
        example_input: a tensor, or a tuple of positional inputs.
        ignored: fnmatch patterns of module names whose outputs must not be pruned.
        frozen: module names whose inputs and outputs both keep their size (tied weights).

    Raises:
        UnsupportedModelError: an op or layer whose effect on channels is unknown, naming it.
    """
    names = {m: n for n, m in model.named_modules()}
    opaque = {n for n, m in model.named_modules() if n and matches(n, ignored) and not isinstance(m, _KNOWN)}
    stack: list[str] = [""]
    calls: dict[object, tuple[str, nn.Module, list]] = {}  # out key -> (name, module, input keys+shapes)
    handles = []

    def pre(mod, args):
        stack.append(names[mod])

    def post(mod, args, out):
        name = stack.pop()
        inside_opaque = any(name.startswith(o + ".") for o in opaque)
        if (isinstance(mod, _KNOWN) or name in opaque) and not inside_opaque:
            ins = [(_key(a), tuple(a.shape)) for a in _tensors(args)]
            for t in _tensors(out):
                if _key(t) is not None:
                    calls[_key(t)] = (name, mod, ins)

    for mod in model.modules():
        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    inputs = tuple(
        x.detach().clone().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x for x in inputs
    )
    namer = _Namer(stack)
    try:
        for p in flags:
            p.requires_grad_(True)
        model.eval()  # the graph of eval mode: no dropout masks, BN uses running stats
        with torch.enable_grad(), namer:
            out = model(*inputs)
    finally:
        for h in handles:
            h.remove()
        for p, f in flags.items():
            p.requires_grad_(f)
        model.train(was_training)
    walker = _Walker(model, calls, namer.where, ignored, inputs)
    walker.frozen = frozen
    return walker.run(_tensors(out))


class _Walker:
    def __init__(self, model, calls, where, ignored, inputs):
        self.model, self.calls, self.where, self.ignored = model, calls, where, ignored
        self.frozen: tuple[str, ...] = ()
        self.uf = UnionFind()
        self.vals: dict[object, Val | None] = {}
        self.members: dict[tuple[str, str], Member] = {}
        self.producer_ids: dict[str, np.ndarray] = {}
        self.param_owner = {p: n for n, m in model.named_modules() for p in m.parameters(recurse=False)}
        self.input_ids = {id(x) for x in inputs if isinstance(x, torch.Tensor)}

    # ---- helpers -------------------------------------------------------------------------
    def fail(self, node, what: str) -> None:
        layer, fn = self.where.get(node, ("<unknown>", type(node).__name__))
        raise UnsupportedModelError(
            f"layer '{layer}' (op {fn}): {what}. Structured pruning cannot rewrite this safely; add the layer to "
            "StructuredConfig's layers: {exclude: [...]} to keep its channels, or rewrite the pattern."
        )

    def fix(self, v: Val | None) -> None:
        if v is not None:
            self.uf.fix(v.ids)

    def member(self, name, module, role, ids) -> None:
        k = (name, role)
        if k in self.members:
            if len(self.members[k].ids) != len(ids):
                raise UnsupportedModelError(f"layer '{name}' is called with different channel counts")
            self.uf.union(self.members[k].ids, ids)
        else:
            self.members[k] = Member(name, module, role, ids)

    def producer(self, name, n, fixed) -> np.ndarray:
        if name not in self.producer_ids:
            self.producer_ids[name] = self.uf.new(n, fixed=fixed)
        return self.producer_ids[name]

    def tracked(self, v: Val | None, cdim: int | None = None, size: int | None = None) -> bool:
        if v is None or v.ids is None:
            return False
        ok = (cdim is None or v.cdim == _norm_dim(cdim, len(v.shape))) and (size is None or len(v.ids) == size)
        if not ok:
            self.fix(v)
        return ok

    # ---- traversal -----------------------------------------------------------------------
    def inputs(self, key):
        if key in self.calls:
            return [k for k, _ in self.calls[key][2]]
        return [(f, nr) if f is not None else None for f, nr in key[0].next_functions]

    def run(self, outs: list[torch.Tensor]) -> Graph:
        order, seen = [], set()
        for t in outs:
            if _key(t) is None or _key(t) in seen:
                continue
            stack = [(_key(t), False)]
            while stack:
                k, done = stack.pop()
                if done:
                    order.append(k)
                    continue
                if k in seen:
                    continue
                seen.add(k)
                stack.append((k, True))
                stack += [(i, False) for i in self.inputs(k) if i is not None and i not in seen]
        for k in order:
            self.vals[k] = self.visit(k)
        for t in outs:  # the model's outputs keep their size
            self.fix(self.vals.get(_key(t)))
        return self.finish()

    def visit(self, key) -> Val | None:
        node, nr = key
        if key in self.calls:
            return self.module(key)
        if type(node).__name__ == "AccumulateGrad":
            return None  # the example input or a parameter (checked by the op that uses it)
        shape = tuple(node._input_metadata[nr].shape)
        ins = [self.vals.get(k) if k is not None else None for k in self.inputs(key)]
        params = [
            k[0].variable
            for k in self.inputs(key)
            if k is not None and type(k[0]).__name__ == "AccumulateGrad" and id(k[0].variable) not in self.input_ids
        ]
        tracked = [v for v in ins if v is not None and v.ids is not None]
        if params:
            owner = self.param_owner.get(params[0], "<root>")
            if tracked and not matches(owner, self.ignored):
                kind = type(self.model.get_submodule(owner)).__name__ if owner != "<root>" else "model"
                raise UnsupportedModelError(
                    f"layer '{owner}' ({kind})"
                    f" uses its own parameter in op {type(node).__name__} on pruned channels; slimtorch does not "
                    "know how to slice it. Add the layer to StructuredConfig's layers: {exclude: [...]}."
                )
            for v in tracked:
                self.fix(v)
            return None
        if not tracked:
            return None
        return self.op(node, _op(node), type(node).__name__, ins, tracked, shape)

    def op(self, node, op, full, ins, tracked, shape) -> Val | None:
        v = tracked[0]
        nd_in, nd = len(v.shape), len(shape)
        if op in _PASS or full in _SCALAR:
            cdim = v.cdim + (nd - nd_in)
            if 0 <= cdim < nd and shape[cdim] == len(v.ids):
                return Val(shape, v.ids, cdim)
            self.fix(v)
            return None
        if op in _BINARY:
            return self.binary(node, op, ins, shape)
        if op == "Cat":
            d = _norm_dim(node._saved_dim, nd)
            if any(x is None or x.ids is None or x.cdim != v.cdim or len(x.shape) != nd for x in ins):
                for x in tracked:
                    self.fix(x)
                return None
            if d == v.cdim:
                return Val(shape, np.concatenate([x.ids for x in ins]), d)
            for x in ins[1:]:
                self.uf.union(v.ids, x.ids)
            return Val(shape, v.ids, v.cdim)
        if op in _VIEW:
            return self.view(node, v, shape)
        if op in ("Permute", "Transpose", "T"):
            if op == "Permute":
                perm = [_norm_dim(d, nd) for d in node._saved_dims]
            else:
                a, b = (0, 1) if op == "T" else (_norm_dim(node._saved_dim0, nd), _norm_dim(node._saved_dim1, nd))
                perm = list(range(nd))
                perm[a], perm[b] = perm[b], perm[a]
            return Val(shape, v.ids, perm.index(v.cdim))
        if op in ("Mean", "Sum", "Amax", "Amin", "Std", "Var"):
            dims = getattr(node, "_saved_dim", None)
            if dims is None or len(dims) == 0:
                self.fix(v)
                return None
            dims = {_norm_dim(d, nd_in) for d in dims}
            if v.cdim in dims:
                self.fix(v)  # removing a channel changes a mean over channels
                return None
            keep = bool(getattr(node, "_saved_keepdim", False))
            return Val(shape, v.ids, v.cdim if keep else v.cdim - sum(d < v.cdim for d in dims))
        if op in ("Softmax", "LogSoftmax"):
            if _norm_dim(node._saved_dim, nd) == v.cdim:
                self.fix(v)
                return None
            return Val(shape, v.ids, v.cdim)
        if op == "ConstantPadNd":
            if len(node._saved_pad) // 2 > nd - 1 - v.cdim:
                self.fix(v)
                return None
            return Val(shape, v.ids, v.cdim)
        if op in _SLICING:
            d = getattr(node, "_saved_dim", None)
            if d is None or _norm_dim(d, nd_in) == v.cdim:
                self.fix(v)  # hard-coded channel indices would select other channels after pruning
                return None
            cdim = v.cdim - (1 if (nd < nd_in and _norm_dim(d, nd_in) < v.cdim) else 0)
            return Val(shape, v.ids, cdim) if shape[cdim] == len(v.ids) else self.fix(v)
        self.fail(node, f"op {type(node).__name__} reads pruned channels and its effect on them is unknown")
        return None

    def binary(self, node, op, ins, shape) -> Val | None:
        nd = len(shape)
        tracked = [v for v in ins if v is not None and v.ids is not None]
        cdim = tracked[0].cdim + (nd - len(tracked[0].shape))
        consts = [None] * len(ins)
        if op in ("Mul", "Div"):
            consts = [getattr(node, "_saved_self", None), getattr(node, "_saved_other", None)]
        ok = True
        for i, v in enumerate(ins):
            if v is not None and v.ids is not None:
                ok &= v.cdim + (nd - len(v.shape)) == cdim and len(v.ids) == shape[cdim]
                continue
            s = tuple(v.shape) if v is not None else (tuple(consts[i].shape) if consts[i] is not None else None)
            # an untracked operand is harmless only if it broadcasts along the channel dim
            size = s[cdim - (nd - len(s))] if s is not None and 0 <= cdim - (nd - len(s)) < len(s) else 1
            ok &= s is not None and size == 1
        if not ok:
            for v in tracked:
                self.fix(v)
            return None
        for v in tracked[1:]:
            self.uf.union(tracked[0].ids, v.ids)
        return Val(shape, tracked[0].ids, cdim)

    def view(self, node, v: Val, shape) -> Val | None:
        ins = v.shape
        pre, c = math.prod(ins[: v.cdim]), len(v.ids)
        post = math.prod(ins[v.cdim + 1 :])
        for j in range(len(shape)):
            if math.prod(shape[:j]) != pre:
                continue
            width = shape[j]
            if width % c == 0 and post % (width // c) == 0 and math.prod(shape[j + 1 :]) * (width // c) == post:
                return Val(shape, np.repeat(v.ids, width // c), j)
        self.fail(node, f"reshape {tuple(ins)} -> {tuple(shape)} mixes channel dim {v.cdim} with others")
        return None

    def module(self, key) -> Val | None:
        name, mod, ins = self.calls[key]
        node, nr = key
        shape = tuple(node._input_metadata[nr].shape)
        vin = [self.vals.get(k) if k is not None else None for k, _ in ins]
        v = vin[0] if vin else None
        ignored = matches(name, self.ignored)
        if not isinstance(mod, _KNOWN) or name in self.frozen:
            # an ignored (opaque) or frozen (tied) module: keep what goes in and out
            for x in vin:
                self.fix(x)
            return None
        if isinstance(mod, _CONV):
            if mod.groups == 1:
                if self.tracked(v, 1, mod.in_channels):
                    self.member(name, mod, "in", v.ids)
                ids = self.producer(name, mod.out_channels, ignored)
                self.member(name, mod, "out", ids)
                return Val(shape, ids, 1)
            if mod.groups == mod.in_channels == mod.out_channels and not ignored:
                if self.tracked(v, 1, mod.in_channels):
                    self.member(name, mod, "dw", v.ids)
                    return Val(shape, self.members[(name, "dw")].ids, 1)
                return None
            self.fix(v)  # grouped convs (and ignored depthwise ones) keep their channels
            return None
        if isinstance(mod, nn.Linear):
            if self.tracked(v, -1, mod.in_features):
                self.member(name, mod, "in", v.ids)
            ids = self.producer(name, mod.out_features, ignored)
            self.member(name, mod, "out", ids)
            return Val(shape, ids, len(shape) - 1)
        if isinstance(mod, _BN):
            if self.tracked(v, 1, mod.num_features):
                self.member(name, mod, "bn", v.ids)
                return Val(shape, self.members[(name, "bn")].ids, 1)
            return None
        if isinstance(mod, nn.Embedding):
            ids = self.producer(name, mod.embedding_dim, ignored)
            self.member(name, mod, "out", ids)
            return Val(shape, ids, len(shape) - 1)
        self.fix(v)  # LayerNorm / GroupNorm statistics depend on every channel
        return None

    def finish(self) -> Graph:
        uf, members = self.uf, list(self.members.values())
        # groups: units (roots) connected through a shared layer
        owner: dict[int, int] = {}
        gparent: dict[int, int] = {}

        def gfind(x):
            while gparent[x] != x:
                gparent[x] = gparent[gparent[x]]
                x = gparent[x]
            return x

        for i, m in enumerate(members):
            gparent[i] = i
        # consumers ("in") read many units but do not tie them together: a layer after a
        # concatenation must not merge the concatenated producers into one group
        for i, m in sorted(enumerate(members), key=lambda im: im[1].role == "in"):
            for r in set(uf.roots(m.ids).tolist()):
                if m.role == "in" and r in owner:
                    continue
                if r in owner:
                    a, b = gfind(owner[r]), gfind(i)
                    gparent[b] = a
                else:
                    owner[r] = i
        by_group: dict[int, set[int]] = {}
        prod: dict[int, list[str]] = {}
        for r, i in owner.items():
            by_group.setdefault(gfind(i), set()).add(r)
        for i, m in enumerate(members):
            if m.role == "out":
                prod.setdefault(gfind(i), []).append(m.name)
        g = Graph(uf, members)
        for m in members:
            if m.role == "out":
                for r in set(uf.roots(m.ids).tolist()):
                    g.unit_producers[r] = tuple(sorted({*g.unit_producers.get(r, ()), m.name}))
        for gi, roots in by_group.items():
            if any(not uf.fixed[r] for r in roots):
                g.groups.append(sorted(roots))
                g.group_producers.append(prod.get(gi, []))
        return g
