"""Finding layer patterns (conv → BN, conv → act → conv) in any traceable model.

``torch.fx`` traces the user's own ``forward``; where tracing fails (data-
dependent control flow) we fall back to adjacency inside ``nn.Sequential``
containers, which covers zoo-style models. Only module names are returned: the
transforms edit the original modules in place, never the traced copy.
"""

from __future__ import annotations

import torch
from torch import fx, nn
from torch.nn import functional as F

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
RELU_FNS = (F.relu, torch.relu)


def _trace(model: nn.Module) -> fx.GraphModule | None:
    try:
        return fx.symbolic_trace(model)
    except Exception:  # noqa: BLE001 - any tracing failure means "use the Sequential fallback"
        return None


def _sequential_chains(model: nn.Module) -> list[list[tuple[str, nn.Module]]]:
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            out.append([(f"{name}.{k}" if name else k, m) for k, m in mod.named_children()])
    return out


def _module_of(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _only_user(node: fx.Node) -> fx.Node | None:
    return next(iter(node.users)) if len(node.users) == 1 else None


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """(conv name, BN name) where the BN reads only that conv's output."""
    gm = _trace(model)
    pairs: list[tuple[str, str]] = []
    if gm is not None:
        for node in gm.graph.nodes:
            if isinstance(_module_of(gm, node), CONV):
                user = _only_user(node)
                if user is not None and isinstance(_module_of(gm, user), BN):
                    pairs.append((str(node.target), str(user.target)))
        return pairs
    for chain in _sequential_chains(model):
        for (n1, m1), (n2, m2) in zip(chain, chain[1:]):
            if isinstance(m1, CONV) and isinstance(m2, BN):
                pairs.append((n1, n2))
    return pairs


def _activation(gm: fx.GraphModule, node: fx.Node) -> str | None:
    """'identity', 'relu', 'relu6' or None (not positive-homogeneous or unknown)."""
    mod = _module_of(gm, node)
    if isinstance(mod, nn.ReLU) or (node.op == "call_function" and node.target in RELU_FNS):
        return "relu"
    if node.op == "call_method" and node.target == "relu":
        return "relu"
    if isinstance(mod, nn.ReLU6) or (node.op == "call_function" and node.target is F.relu6):
        return "relu6"
    if isinstance(mod, (nn.Identity, nn.Dropout)):
        return "identity"
    return None


def equalizable_pairs(model: nn.Module) -> list[tuple[str, str | None, str, str]]:
    """(layer1, ReLU6 module name or None, activation kind, layer2) chains.

    layer1's output reaches layer2 only through single-user ReLUs / identities
    (at most one ReLU6, whose module name is returned so it can be replaced);
    both layers are convs or Linears.
    """
    lin = CONV + (nn.Linear,)
    gm = _trace(model)
    out: list[tuple[str, str | None, str, str]] = []
    if gm is not None:
        for node in gm.graph.nodes:
            if not isinstance(_module_of(gm, node), lin):
                continue
            # walk through a chain of single-user activations / identities (a folded BN is an Identity)
            nxt, kinds, act_name = _only_user(node), [], None
            while nxt is not None and not isinstance(_module_of(gm, nxt), lin):
                kind = _activation(gm, nxt)
                if kind is None:
                    break
                kinds.append(kind)
                if kind == "relu6":
                    act_name = str(nxt.target) if nxt.op == "call_module" else None
                nxt = _only_user(nxt)
            if nxt is None or not isinstance(_module_of(gm, nxt), lin) or kinds.count("relu6") > 1:
                continue
            kind = "relu6" if "relu6" in kinds else "relu" if "relu" in kinds else "identity"
            out.append((str(node.target), act_name, kind, str(nxt.target)))
        return out
    for chain in _sequential_chains(model):
        for i, (n1, m1) in enumerate(chain[:-1]):
            if not isinstance(m1, lin):
                continue
            n2, m2 = chain[i + 1]
            if isinstance(m2, lin):
                out.append((n1, None, "identity", n2))
            elif i + 2 < len(chain) and isinstance(chain[i + 2][1], lin):
                kind = "relu" if isinstance(m2, nn.ReLU) else "relu6" if isinstance(m2, nn.ReLU6) else None
                if kind:
                    out.append((n1, n2, kind, chain[i + 2][0]))
    return out


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
