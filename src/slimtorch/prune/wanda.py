"""Wanda (Sun et al. 2024, "A Simple and Effective Pruning Approach for Large Language Models").

A weight's importance is its magnitude times the norm of the input feature it
multiplies, ``S_ij = |W_ij| · ‖X_j‖₂``: a large weight on an input that is always
near zero barely changes the output, and a small weight on one of the few huge
activation channels LLMs have matters a lot. Weights compete only within their
output row (each output keeps the same fraction of its inputs), which the paper
found essential for LLMs. No weight update, no Hessian: one pass of the
calibration data per block gives the norms. With ``refit`` (not in the paper) the
kept weights are then re-solved exactly for Wanda's mask on the same inputs
(:mod:`slimtorch.prune.refit`), which needs each input set's Gram matrix too.

Block by block (:mod:`slimtorch.core.blockwise`): each block is scored on the
outputs of the already-pruned earlier blocks, and, with ``true_sequential``,
each input set (q/k/v, o, gate/up, down) on inputs that went through the pruned
earlier sets of its own block.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from slimtorch.core.blockwise import BlockData, input_hooks, sequential
from slimtorch.prune.lm_common import CalibratedPruneConfig, block_names, decoder_linears, keep_mask
from slimtorch.prune.refit import refit_weight
from slimtorch.quantize.gptq import accumulate, hessian_accumulator, input_sets
from slimtorch.quantize.weight_only import coerce, target


class WandaConfig(CalibratedPruneConfig):
    """Wanda settings.

    Attributes:
        scope: ``row`` (the paper: weights compare within an output row) or ``layer``.
        refit: keep Wanda's mask, re-solve the kept weights exactly (:mod:`slimtorch.prune.refit`).
    """

    scope: Literal["row", "layer"] = "row"


def wanda_scores(weight: torch.Tensor, sq_norms: torch.Tensor) -> torch.Tensor:
    """``|W| · ‖X_j‖`` of ``weight (out, in)`` given the per-input sums of squares ``sq_norms (in,)``."""
    return weight.detach().abs().float() * sq_norms.sqrt().float()[None, :]


@torch.no_grad()
def wanda_linear(
    linear: nn.Linear, sq_norms: torch.Tensor, config: WandaConfig, H: torch.Tensor | None = None, name: str = "layer"
) -> torch.Tensor:
    """Prune one Linear in place from its inputs' sums of squares; returns the keep mask (usable on any Linear).

    With ``config.refit`` and the inputs' Gram matrix ``H (in, in)``, the kept weights are
    re-solved for the mask (:func:`~slimtorch.prune.refit.refit_weight`); without ``H`` (a
    Linear the block never calls) they stay as they are.
    """
    keep = keep_mask(wanda_scores(linear.weight, sq_norms), config, config.scope)
    if config.refit and H is not None:
        linear.weight.copy_(refit_weight(linear.weight, keep, H, config.refit_damp, name).to(linear.weight.dtype))
    else:
        linear.weight.mul_(keep.to(linear.weight.dtype))
    return keep


def _sq_sum(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1]).double().pow(2).sum(0)


def _unknown(linear: nn.Linear) -> torch.Tensor:
    # A Linear the block never calls has unknown inputs: equal norms, i.e. magnitude pruning.
    return torch.ones(linear.in_features, dtype=torch.float64)


def input_sq_norms(
    block: nn.Module, data: BlockData, names: list[str], grams: dict[str, dict] | None = None
) -> dict[str, torch.Tensor]:
    """Σ over every calibration position of ``x_j²`` for the inputs of ``block.<name>`` (float64), one pass.

    ``grams``: ``{name: hessian_accumulator}`` also filled with the inputs' Gram matrices (for ``refit``).
    """
    acc: dict[str, torch.Tensor] = {}

    def add(n: str, x: torch.Tensor) -> None:
        acc[n] = acc[n] + _sq_sum(x) if n in acc else _sq_sum(x)
        if grams is not None:
            accumulate(grams[n], x)

    with input_hooks({n: block.get_submodule(n) for n in names}, add):
        data.run(block)
    return {n: acc[n] if n in acc else _unknown(block.get_submodule(n)) for n in names}


def _gram(acc: dict | None) -> torch.Tensor | None:
    return acc["H"] / acc["n"] if acc is not None and acc["n"] else None


def prune_block(block: nn.Module, data: BlockData, names: list[str], config: WandaConfig) -> None:
    """Wanda on the Linears ``names`` of one block, given the block's calibration inputs.

    Linears reading one tensor (q/k/v; gate/up) share their input norms. With
    ``true_sequential`` each set's norms are gathered after the earlier sets were pruned
    (the forward stops at the set's input); otherwise all come from the dense block in
    one pass (the paper's protocol).
    """
    sets = input_sets(block, data, names)
    mods = {n: block.get_submodule(n) for n in names}
    if config.true_sequential:
        for k, group in enumerate(sets):
            data.settle(block, [mods[n] for g in sets[k:] for n in g])  # reuse what is final (same values)
            acc: list[torch.Tensor] = []
            gram = hessian_accumulator(mods[group[0]].in_features) if config.refit else None

            def add(x, acc=acc, gram=gram):
                acc.append(_sq_sum(x))
                if gram is not None:
                    accumulate(gram, x)

            data.feed(block, mods[group[0]], add)
            norms = torch.stack(acc).sum(0) if acc else _unknown(mods[group[0]])
            for n in group:
                wanda_linear(mods[n], norms, config, _gram(gram), n)
        return
    grams = {g[0]: hessian_accumulator(mods[g[0]].in_features) for g in sets} if config.refit else None
    norms = input_sq_norms(block, data, [g[0] for g in sets], grams)
    for group in sets:
        for n in group:
            wanda_linear(mods[n], norms[group[0]], config, _gram(grams and grams[group[0]]), n)


@torch.no_grad()
def prune_wanda(
    model: nn.Module,
    config: WandaConfig | dict | None,
    ids: torch.Tensor,
    *,
    inplace: bool = False,
    checkpoint_dir=None,
) -> nn.Module:
    """Wanda-prune the decoder Linears of ``model`` on calibration token ids ``ids (N, L)``.

    Args:
        config: a :class:`WandaConfig` or its dict (``None``: 50 % unstructured, per row).
        inplace: change ``model`` itself instead of a copy.
        checkpoint_dir: resumable state (see :func:`slimtorch.core.blockwise.sequential`).

    Returns:
        The pruned model: same classes, pruned weights exactly zero.
    """
    config = coerce(WandaConfig, config)
    model = target(model, inplace)
    return sequential(
        model,
        ids,
        _block_process(model, config),
        config.batch_size,
        checkpoint_dir,
        tag="wanda" + config.model_dump_json(),
        description="Wanda",
    )


def _block_process(model: nn.Module, config: WandaConfig):
    """``process(i, block, data)`` pruning block ``i``'s selected Linears.

    The in-memory and streamed paths share it.
    """
    prefix, chosen = decoder_linears(model, config)

    def process(i: int, block: nn.Module, data: BlockData) -> None:
        mine = block_names(prefix, i, chosen)
        if mine:
            prune_block(block, data, mine, config)

    return process


@torch.no_grad()
def prune_wanda_streamed(
    source,
    out_dir,
    config: WandaConfig | dict | None,
    ids: torch.Tensor,
    checkpoint_dir=None,
    attn_implementation: str | None = None,
):
    """Wanda of the causal LM in folder ``source`` without loading it, one block in memory at a time.

    The same pruned weights as :func:`prune_wanda` (see
    :func:`slimtorch.quantize.gptq.quantize_gptq_streamed` for the arguments); the folder
    reloads with :func:`~slimtorch.quantize.qlinear.load_quantized_lm`. Returns ``out_dir``.
    """
    from slimtorch.core.streamed import calibrate_streamed
    from slimtorch.quantize.qlinear import quantized_state

    config = coerce(WandaConfig, config)
    return calibrate_streamed(
        source,
        out_dir,
        ids,
        lambda model: _block_process(model, config),
        quantized_state,
        batch_size=config.batch_size,
        tag="wanda" + config.model_dump_json(),
        checkpoint_dir=checkpoint_dir,
        attn_implementation=attn_implementation,
        description="Wanda (streamed)",
    )
