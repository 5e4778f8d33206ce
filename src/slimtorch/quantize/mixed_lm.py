"""Mixed bit widths for a language model's Linears, from a measured sensitivity under a size budget.

Sensitivity of a Linear at ``b`` bits is the output error its rounding causes,
relative to the layer's output energy: ``tr(D H Dᵀ) / tr(W H Wᵀ)`` with
``D = W − RTN_b(W)`` and ``H`` the Gram matrix of the layer's calibration inputs
(gathered in one block-by-block pass over the float model, nothing changed).
This is the quantity GPTQ minimises, measured before GPTQ runs, and costs one
pass instead of a perplexity evaluation per layer and bit width.

:func:`choose_bits` then starts every layer at the highest candidate and lowers,
one step at a time, the layer whose step costs the least error per byte saved
(a greedy Lagrangian knapsack, as HAWQ-style allocators do) until the average
bits per weight (codes plus scale/zero overhead) meet the budget. The result is
a ``per_layer_bits`` dict for :class:`~slimtorch.quantize.gptq.GPTQConfig`.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, input_hooks, sequential
from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import LayerSelection, SelectsLayers
from slimtorch.quantize.gptq import accumulate, hessian_accumulator
from slimtorch.quantize.weight_only import default_selection, selected_linears
from slimtorch.quantize.wgrid import GridConfig, group_bounds, rtn_weight


class MixedBitsConfig(SelectsLayers):
    """Candidates, budget and grid of a mixed-precision allocation.

    Attributes:
        candidates: bit widths a layer may get.
        avg_bits: budget: average bits per weight over the selected Linears, including
            the per-group scale (32 bits) and zero (``bits`` bits) overhead.
        grid: group size and symmetry (``bits`` is ignored).
        layers: which Linears, as in the weight-only configs (default ``{exclude: [lm_head]}``).
    """

    candidates: list[int] = pydantic.Field(default_factory=lambda: [3, 4])
    avg_bits: float = pydantic.Field(3.5, gt=1)
    grid: GridConfig = pydantic.Field(default_factory=GridConfig)
    layers: LayerSelection = pydantic.Field(default_factory=default_selection)
    batch_size: int = pydantic.Field(8, ge=1)

    @pydantic.field_validator("candidates")
    @classmethod
    def _bits(cls, v: list[int]) -> list[int]:
        if not v or any(b < 2 or b > 8 for b in v):
            raise ValueError("candidates must be bit widths between 2 and 8")
        return sorted(set(v))


def bits_per_weight(shape: tuple[int, int], bits: int, group_size: int | None) -> float:
    """Stored bits per weight: codes plus one float32 scale and a ``bits``-bit zero per group and row."""
    groups = len(group_bounds(shape[1], group_size))
    return bits + groups * (32 + bits) / shape[1]


@torch.no_grad()
def layer_sensitivity(model: nn.Module, ids: torch.Tensor, config: MixedBitsConfig) -> dict[str, dict[int, float]]:
    """``{layer: {bits: relative output error}}`` for every selected Linear of the decoder blocks."""
    from slimtorch.models.llm import decoder_blocks
    from slimtorch.quantize.weight_only import WeightOnlyConfig

    chosen = selected_linears(model, WeightOnlyConfig(layers=config.layers))
    prefix, _ = decoder_blocks(model)
    out: dict[str, dict[int, float]] = {}

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        head = f"{prefix}.{i}."
        mods = {n[len(head) :]: m for n, m in chosen.items() if n.startswith(head)}
        accs = {n: hessian_accumulator(m.in_features) for n, m in mods.items()}
        with input_hooks(mods, lambda n, x: accumulate(accs[n], x)):
            data.run(block)
        for n, m in mods.items():
            H = (accs[n]["H"] / max(accs[n]["n"], 1)).float()
            w = m.weight.detach().float()
            energy = float(torch.trace(w @ H @ w.T)) or 1.0
            errs = {}
            for b in config.candidates:
                d = rtn_weight(w, config.grid.replace(bits=b)).dequantize() - w
                errs[b] = float(torch.trace(d @ H @ d.T)) / energy
            out[head + n] = errs

    sequential(model, ids, process, config.batch_size, description="sensitivity")
    return out


def choose_bits(
    sensitivity: dict[str, dict[int, float]], shapes: dict[str, tuple[int, int]], config: MixedBitsConfig
) -> dict[str, int]:
    """Per-layer bits meeting ``config.avg_bits`` with the least summed relative error (greedy).

    Raises:
        ConfigError: the budget is below what the lowest candidate everywhere gives.
    """
    cands = config.candidates
    bits = {n: cands[-1] for n in sensitivity}
    numel = {n: shapes[n][0] * shapes[n][1] for n in sensitivity}
    total = sum(numel.values())

    def stored(n, b):
        return bits_per_weight(shapes[n], b, config.grid.group_size) * numel[n]

    floor = sum(stored(n, cands[0]) for n in bits) / total
    if config.avg_bits < floor:
        raise ConfigError(
            f"avg_bits {config.avg_bits} is below {floor:.3f}, what {cands[0]} bits everywhere "
            "gives with the scale overhead; raise it or add a lower candidate",
            field="avg_bits",
        )
    current = sum(stored(n, b) for n, b in bits.items())
    while current / total > config.avg_bits:
        best, best_cost = None, float("inf")
        for n, b in bits.items():
            k = cands.index(b)
            if k == 0:
                continue
            lower = cands[k - 1]
            saved = stored(n, b) - stored(n, lower)
            cost = (sensitivity[n][lower] - sensitivity[n][b]) / saved
            if cost < best_cost:
                best, best_cost = n, cost
        if best is None:
            break
        current -= stored(best, bits[best]) - stored(best, cands[cands.index(bits[best]) - 1])
        bits[best] = cands[cands.index(bits[best]) - 1]
    return bits
