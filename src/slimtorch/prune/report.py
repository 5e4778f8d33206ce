"""How sparse a model is, per layer and in total (counted on the effective weights)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.prune.mask import get_mask
from slimtorch.prune.select import PRUNABLE_TYPES


@torch.no_grad()
def sparsity_report(model: nn.Module) -> dict[str, dict[str, Any]]:
    """fqn → ``{shape, numel, nonzero, sparsity, masked}`` for every Linear / Conv weight.

    ``sparsity`` is the fraction of exact zeros of the effective weight (mask applied),
    so it is also right for a model whose masks were already folded.
    """
    out: dict[str, dict[str, Any]] = {}
    for fqn, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES) or getattr(module, "weight", None) is None:
            continue
        w = module.weight
        nz = int((w != 0).sum())
        out[fqn or "<root>"] = {
            "shape": list(w.shape),
            "numel": w.numel(),
            "nonzero": nz,
            "sparsity": 1.0 - nz / max(w.numel(), 1),
            "masked": get_mask(module) is not None,
        }
    return out


def _effective_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter as the forward pass sees it (masked where parametrized).

    Computed in place rather than via ``fold(copy.deepcopy(model))``: a deep copy of
    a parametrized module shares its injected class with the original, and removing
    the copy's parametrization would delete the original's ``weight`` property too.
    """
    out = []
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # its ``original`` is counted through the owner's effective tensor
        out.extend(p.detach() for p in module._parameters.values() if p is not None)
        if parametrize.is_parametrized(module):
            out.extend(getattr(module, name).detach() for name in module.parametrizations)
    return out


@torch.no_grad()
def total_sparsity(model: nn.Module) -> dict[str, Any]:
    """Totals: ``weights`` / ``weights_nonzero`` / ``weight_sparsity`` over Linear / Conv weights
    (the figure Han et al. report), and ``params`` / ``params_nonzero`` / ``param_sparsity``
    over every parameter including biases and norms.
    """
    layers = sparsity_report(model)
    weights = sum(v["numel"] for v in layers.values())
    weights_nz = sum(v["nonzero"] for v in layers.values())
    params = params_nz = 0
    for t in _effective_parameters(model):
        params += t.numel()
        params_nz += int((t != 0).sum())
    return {
        "weights": weights,
        "weights_nonzero": weights_nz,
        "weight_sparsity": 1.0 - weights_nz / max(weights, 1),
        "params": params,
        "params_nonzero": params_nz,
        "param_sparsity": 1.0 - params_nz / max(params, 1),
        "compression": weights / max(weights_nz, 1),
    }
