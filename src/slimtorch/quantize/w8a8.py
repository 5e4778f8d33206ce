"""W8A8 for decoders with SmoothQuant (Xiao et al. 2023), simulated in float for perplexity.

Decoder activations have a few outlier channels (hundreds of times the median),
so an 8-bit activation grid set by them wastes most of its levels. SmoothQuant
divides input channel ``j`` by ``s_j = max|X_j|^α / max|W_:,j|^(1-α)`` and
multiplies weight column ``j`` by ``s_j``; for the Linears fed by an RMSNorm
(q/k/v and gate/up in a Llama block) the division folds into the norm's weight,
so it costs nothing at run time. Other Linears (o_proj, down_proj) are left
unsmoothed, as in the paper's recipe for Llama.

Quantization then follows SmoothQuant's standard setting: weights int8
symmetric per output channel, activations int8 symmetric *per token*, computed
dynamically (what ONNX Runtime's and PyTorch's dynamic INT8 kernels do per
tensor or per row). This module simulates that arithmetic exactly in float
(``W8A8Linear``), which is what perplexity needs; the integer kernels are the
deployment path's (:mod:`slimtorch.deploy`).
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, sequential
from slimtorch.core.config import FrozenConfig
from slimtorch.quantize.awq import _llama_groups, _scale_prev
from slimtorch.quantize.weight_only import coerce, target


class W8A8Config(FrozenConfig):
    """SmoothQuant W8A8.

    Attributes:
        alpha: migration strength (0: none; the paper uses 0.5 for most models, up to 0.85).
        smooth: apply SmoothQuant before quantizing (False: plain W8A8).
        batch_size: calibration sequences per forward.
    """

    alpha: float = pydantic.Field(0.5, ge=0, le=1)
    smooth: bool = True
    batch_size: int = pydantic.Field(8, ge=1)


def _fake_int8(x: torch.Tensor, dim: int) -> torch.Tensor:
    scale = x.abs().amax(dim=dim, keepdim=True).clamp(min=1e-8) / 127
    return torch.clamp(torch.round(x / scale), -127, 127) * scale


class W8A8Linear(nn.Module):
    """int8 weights per output channel, int8 activations per token (dynamic), simulated."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = nn.Parameter(_fake_int8(linear.weight.detach(), dim=1), requires_grad=False)
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(_fake_int8(x, dim=-1), self.weight, self.bias)


@torch.no_grad()
def quantize_w8a8(
    model: nn.Module, config: W8A8Config | dict | None, ids: torch.Tensor | None = None, *, inplace: bool = False
) -> nn.Module:
    """SmoothQuant (with calibration ``ids``) then simulated W8A8 on every Linear of the decoder blocks."""
    config = coerce(W8A8Config, config)
    model = target(model, inplace)
    from slimtorch.models.llm import decoder_blocks

    prefix, _ = decoder_blocks(model)

    def process(_i: int, block: nn.Module, data: BlockData) -> None:
        if config.smooth:
            for prev, lins, _judge in _llama_groups(block):
                if isinstance(prev, nn.Linear):  # only norm-fed groups fold for free
                    continue
                first = block.get_submodule(lins[0])
                amax = torch.zeros(first.in_features)

                def grab(x, amax=amax):
                    amax.copy_(torch.maximum(amax, x.abs().reshape(-1, x.shape[-1]).amax(0)))

                data.feed(block, first, grab)
                wmax = torch.cat([block.get_submodule(n).weight.abs() for n in lins]).amax(0)
                s = amax.clamp(min=1e-5).pow(config.alpha) / wmax.clamp(min=1e-5).pow(1 - config.alpha)
                s = s.clamp(min=1e-5)
                for n in lins:
                    block.get_submodule(n).weight.mul_(s)
                _scale_prev(prev, s)
        for name, mod in list(block.named_modules()):
            if isinstance(mod, nn.Linear):
                parent, _, child = name.rpartition(".")
                setattr(block.get_submodule(parent) if parent else block, child, W8A8Linear(mod))

    if config.smooth and ids is None:
        from slimtorch.core.errors import ConfigError

        raise ConfigError("SmoothQuant needs calibration ids; pass ids or set smooth: false", field="smooth")
    if ids is None:
        for i, block in enumerate(model.get_submodule(prefix)):
            process(i, block, BlockData([], []))
        return model
    sequential(model, ids, process, config.batch_size, description="SmoothQuant W8A8")
    return model
