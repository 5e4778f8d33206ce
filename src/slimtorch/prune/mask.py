"""Pruning masks as ``torch.nn.utils.parametrize`` parametrizations.

Han et al. 2015 ("Learning both weights and connections") prune by removing
connections and retraining the rest. Keeping the mask as a parametrization makes
the *effective* weight ``original * mask`` on every forward pass, so no
optimizer (momentum, weight decay, Adam moments) can bring a pruned connection
back: its gradient is zero and its effective value is always zero. The
underlying ``original`` is zeroed at pruned positions too, so the stored
weights agree with the effective ones and a later :func:`finalize` (= fold) is
exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from slimtorch.io.fold import fold


class Mask(nn.Module):
    """Parametrization ``w -> w * mask`` with a boolean buffer ``mask`` (True = kept)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask

    def extra_repr(self) -> str:
        return f"shape={tuple(self.mask.shape)}, sparsity={1 - self.mask.float().mean().item():.4f}"


def get_mask(module: nn.Module, name: str = "weight") -> Mask | None:
    """The :class:`Mask` parametrizing ``module.<name>``, or None."""
    if not parametrize.is_parametrized(module, name):
        return None
    for p in module.parametrizations[name]:
        if isinstance(p, Mask):
            return p
    return None


def original_weight(module: nn.Module, name: str = "weight") -> torch.Tensor:
    """The trainable tensor under any parametrizations (the plain parameter otherwise)."""
    if parametrize.is_parametrized(module, name):
        return module.parametrizations[name].original
    return getattr(module, name)


@torch.no_grad()
def set_mask(module: nn.Module, keep: torch.Tensor, name: str = "weight") -> Mask:
    """Install (or update) the mask of ``module.<name>`` to ``keep`` and zero pruned originals.

    Args:
        keep: bool tensor of the weight's shape, True where the weight stays.
    """
    weight = getattr(module, name)
    if keep.shape != weight.shape:
        raise ValueError(f"mask shape {tuple(keep.shape)} != weight shape {tuple(weight.shape)}")
    keep = keep.to(device=weight.device, dtype=torch.bool)
    mask = get_mask(module, name)
    if mask is None:
        mask = Mask(keep)
        parametrize.register_parametrization(module, name, mask)
    else:
        mask.mask.copy_(keep)
    orig = original_weight(module, name)
    # Only exact when the mask is the first parametrization; otherwise the original
    # lives in another space (e.g. pre-quantization) and is left alone.
    if module.parametrizations[name][0] is mask:
        orig.mul_(keep)
    return mask


@torch.no_grad()
def zero_optimizer_state(optimizer: torch.optim.Optimizer, model: nn.Module) -> None:
    """Zero momentum / Adam moments at pruned positions.

    Not needed for correctness (the effective weight is masked anyway) but it keeps
    the pruned ``original`` entries at exactly zero, so the parameter tensor itself
    stays sparse during fine-tuning.
    """
    for module in model.modules():
        mask = get_mask(module)
        if mask is None:
            continue
        orig = original_weight(module)
        state = optimizer.state.get(orig)
        if not state:
            continue
        for key in ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
            buf = state.get(key)
            if isinstance(buf, torch.Tensor) and buf.shape == mask.mask.shape:
                buf.mul_(mask.mask)


def remove_masks(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Remove every parametrization, keeping the effective (masked) weights as plain parameters.

    A copy by default, like every transform (docs/api.md); ``inplace=True`` folds ``model`` itself.
    """
    return fold(model, inplace=inplace)


def finalize(model: nn.Module) -> nn.Module:
    """Fold the masks in place (``remove_masks(model, inplace=True)``): the last step of a pruning run."""
    return fold(model, inplace=True)


def masked_layers(model: nn.Module) -> dict[str, nn.Module]:
    """fqn → module for every module whose weight carries a :class:`Mask`."""
    return {fqn: m for fqn, m in model.named_modules() if get_mask(m) is not None}
