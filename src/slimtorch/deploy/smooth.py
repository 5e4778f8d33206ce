"""SmoothQuant (Xiao et al. 2023) for dynamic INT8: move activation outliers into the weights.

Dynamic INT8 (ONNX Runtime's ``DynamicQuantizeLinear`` + ``MatMulInteger``) quantizes
each Linear's input with one scale per tensor, per batch. Transformer activations
have a few outlier channels, so that scale is set by them and every other channel
keeps only a few levels. Dividing input channel ``j`` by ``s_j`` and multiplying
weight column ``j`` by ``s_j`` leaves the float output unchanged (an exact
reparametrisation); with ``s_j = max|X_j|^α / max|W_:,j|^(1-α)`` the activation and
weight ranges are balanced, and weights are quantized per output channel, which
absorbs the larger columns better than a per-tensor activation scale absorbs outliers.

The division stays an explicit per-channel ``Mul`` in front of the Linear (one
elementwise op): that works for any Linear, whatever produced its input (GELU
outputs in a BERT FFN cannot take a folded scale). Written here because ORT's own
SmoothQuant needs Intel Neural Compressor and static quantization.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from slimtorch.deploy.graph import set_module


class SmoothedLinear(nn.Linear):
    """``linear(x * inv_scale)`` with the scale folded into the weight columns (same output as the original).

    A subclass of ``nn.Linear`` that replaces the original in place, so module names (used by
    ``to_int8``'s ``layers`` patterns and reported float layers) do not change.
    """

    def __init__(self, linear: nn.Linear, scale: torch.Tensor):
        super().__init__(
            linear.in_features,
            linear.out_features,
            linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        with torch.no_grad():
            self.weight.copy_(linear.weight * scale)
            if linear.bias is not None:
                self.bias.copy_(linear.bias)
        self.register_buffer("inv_scale", 1.0 / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x * self.inv_scale, self.weight, self.bias)


@torch.no_grad()
def input_channel_max(model: nn.Module, batches: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Per Linear (by module name), the max |input| of each input channel over ``batches``."""
    amax: dict[str, torch.Tensor] = {}

    def hook(name):
        def pre(_mod, inp):
            x = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).amax(0).float()
            amax[name] = torch.maximum(amax[name], x) if name in amax else x

        return pre

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    try:
        model.eval()
        for b in batches:
            model(*b)
    finally:
        for h in handles:
            h.remove()
    return amax


@torch.no_grad()
def smooth_linears(
    model: nn.Module, batches: list[tuple[torch.Tensor, ...]], alpha: float = 0.5, *, inplace: bool = False
) -> nn.Module:
    """Wrap every ``nn.Linear`` that saw calibration input in a :class:`SmoothedLinear` (exact in float).

    Args:
        batches: calibration inputs (the activation maxima come from them).
        alpha: migration strength: 0 leaves activations alone, 1 moves all of their range
            into the weights. Xiao et al. use 0.5 for most models, up to 0.75–0.85 for harder ones.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth alpha must be in [0, 1], got {alpha}")
    m = model if inplace else copy.deepcopy(model)
    amax = input_channel_max(m, batches)
    for name, mod in list(m.named_modules()):
        if not isinstance(mod, nn.Linear) or name not in amax:
            continue  # a Linear the calibration data never reached keeps its weights
        w = mod.weight
        s = amax[name].clamp_min(1e-5).pow(alpha) / w.abs().amax(0).float().clamp_min(1e-5).pow(1 - alpha)
        set_module(m, name, SmoothedLinear(mod, s.clamp(1e-4, 1e4).to(w.dtype)))
    return m
