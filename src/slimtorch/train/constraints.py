"""Weight constraints applied after each optimizer step.

Max-norm (Srivastava et al., 2014, "Dropout: a simple way to prevent neural networks
from overfitting", section 5.1): every hidden unit's incoming weight vector is kept
inside an L2 ball of radius ``c``. Unlike weight decay it costs nothing while a
vector is inside the ball, and because the weights cannot grow without bound a
dropout net can be trained with a learning rate that would otherwise diverge.
Hinton, Vinyals & Dean (2015) used it for their MNIST teacher.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

# layers whose weight's dim 0 indexes output units: a Linear row or a conv filter is one unit's fan-in
_UNIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@torch.no_grad()
def apply_max_norm(model: nn.Module, max_norm: float) -> int:
    """Rescale, in place, each unit's incoming weight vector whose L2 norm exceeds ``max_norm``.

    Covers every ``Linear`` and ``Conv{1,2,3}d`` of ``model`` (the output layer too, as in
    Srivastava et al.'s MNIST nets). Under a parametrization (a pruning mask, fake
    quantization) the trainable ``original`` is constrained, so masked zeros stay zero.
    Biases are left free.

    Returns:
        The number of weight vectors that were rescaled (for logging and tests).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    rescaled = 0
    for module in model.modules():
        if not isinstance(module, _UNIT_LAYERS):
            continue
        if parametrize.is_parametrized(module, "weight"):
            weight = module.parametrizations.weight.original
        else:
            weight = module.weight
        norms = weight.flatten(1).norm(dim=1)
        over = norms > max_norm
        if over.any():
            scale = torch.where(over, max_norm / norms.clamp_min(1e-12), torch.ones_like(norms))
            weight.mul_(scale.view(-1, *([1] * (weight.ndim - 1))))
            rescaled += int(over.sum())
    return rescaled
