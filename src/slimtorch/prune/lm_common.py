"""What magnitude, Wanda and SparseGPT pruning of a language model share: the config, the layers, the masks.

The three methods differ only in how they score weights (|W|, |W|·‖X‖, the OBS
saliency w²/[H⁻¹]²) and in whether they correct the kept weights (SparseGPT).
Everything else lives here, once:

* :class:`LMPruneConfig`: how much (``sparsity``, or an ``N:M`` pattern that fixes
  it), which Linears (``layers: {include, exclude}`` over the model's names),
  and the calibration batching. Sparsity 0 and 1 are refused: one is a no-op that
  still costs a calibration, the other turns every layer's output into its bias.
* :class:`CalibratedPruneConfig`: the methods that see calibration inputs (Wanda,
  SparseGPT) can re-solve the kept weights exactly for their mask (``refit``,
  :mod:`slimtorch.prune.refit`).
* :func:`decoder_linears`: the ``nn.Linear`` layers inside the decoder blocks. The
  embedding and ``lm_head`` (often tied to it) are never pruned, as in both papers.
* :func:`keep_mask`: scores -> bool mask with exact counts, per output row, per
  layer or N:M.

Pruned weights are plain zeros in ordinary ``nn.Linear`` layers (no
parametrization): the result is a normal Hugging Face model that saves and
reloads as one, and the zeros are what an N:M kernel or the entropy coder reads.
"""

from __future__ import annotations

import pydantic
import torch
from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import SelectsLayers, select
from slimtorch.prune.prune import nm_keep, topk_keep


def parse_nm(pattern: str) -> tuple[int, int] | None:
    """``(N, M)`` of an ``"N:M"`` pattern (keep N of every M), ``None`` for ``"unstructured"``.

    Raises:
        ConfigError: anything else, naming ``pattern``.
    """
    if pattern == "unstructured":
        return None
    parts = pattern.split(":")
    if len(parts) == 2 and all(p.strip().isdigit() for p in parts):
        n, m = int(parts[0]), int(parts[1])
        if 0 < n < m:
            return n, m
    raise ConfigError(
        f"invalid value for 'pattern': {pattern!r}; use 'unstructured' or 'N:M' with 0 < N < M "
        "(keep N weights of every M consecutive inputs, e.g. '2:4' or '4:8')",
        field="pattern",
    )


class LMPruneConfig(SelectsLayers):
    """Fields every language-model pruning method shares.

    Attributes:
        sparsity: fraction of each selected layer's weights set to zero, in (0, 1).
            ``None``: 0.5 unstructured, ``1 - N/M`` for an N:M pattern (which fixes it).
        pattern: ``"unstructured"`` or ``"N:M"``: in every M consecutive input columns of
            each output row keep the N best (``"2:4"``: the sparse tensor core pattern).
        layers: ``{include: [...], exclude: [...]}`` over the model's Linear names
            (``"*.mlp.*"``); by default every Linear inside the decoder blocks.
        true_sequential: inside a block, score the Linears that read one input (q/k/v,
            gate/up) from calibration inputs that already went through the pruned earlier
            sets (as GPTQ does); ``False``: every Linear of the block from the dense block.
        batch_size: calibration sequences per forward.
    """

    sparsity: float | None = None
    pattern: str = "unstructured"
    true_sequential: bool = True
    batch_size: int = pydantic.Field(8, ge=1)

    @pydantic.model_validator(mode="after")
    def _check(self):
        nm = parse_nm(self.pattern)
        s = self.sparsity
        if s is not None and not 0.0 < s < 1.0:
            why = "prunes nothing" if s <= 0 else "would remove every weight (each output becomes its bias)"
            raise ConfigError(f"invalid value for 'sparsity': must be in (0, 1), got {s!r} ({why})", field="sparsity")
        if nm is not None and s is not None and abs(s - (1 - nm[0] / nm[1])) > 1e-9:
            raise ConfigError(
                f"'sparsity' {s} contradicts pattern {self.pattern!r}, which keeps {nm[0]} of {nm[1]} "
                f"(sparsity {1 - nm[0] / nm[1]:g}); leave 'sparsity' unset",
                field="sparsity",
            )
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        return parse_nm(self.pattern)

    @property
    def target_sparsity(self) -> float:
        nm = self.nm
        if nm is not None:
            return 1 - nm[0] / nm[1]
        return 0.5 if self.sparsity is None else self.sparsity


class CalibratedPruneConfig(LMPruneConfig):
    """Fields of the pruning methods that calibrate on inputs (Wanda, SparseGPT).

    Attributes:
        refit: after the mask is chosen, re-solve each output row's kept weights exactly
            (least squares on the layer's calibration inputs, :mod:`slimtorch.prune.refit`;
            Boža 2024). Costs one Cholesky factorisation per output row of size its kept
            inputs; Wanda then also gathers each input set's Gram matrix.
        refit_damp: the refit's ridge ``λ = refit_damp · mean(diag H)``, pulling the kept
            weights towards their dense values (a small value fits the calibration inputs
            closer; a large one stays nearer the dense weights).
    """

    refit: bool = False
    refit_damp: float = pydantic.Field(0.01, gt=0, le=1)


def decoder_linears(model: nn.Module, config: LMPruneConfig) -> tuple[str, dict[str, nn.Linear]]:
    """(blocks' qualified name, {name: Linear}) of the decoder-block Linears ``config.layers`` selects.

    Raises:
        ConfigError: a pattern matches nothing, nothing is selected (:func:`slimtorch.core.layers.select`),
            or an N:M pattern does not tile a layer's inputs (names the layer).
    """
    from slimtorch.models.llm import decoder_blocks

    prefix, _ = decoder_blocks(model)
    chosen = select(
        model,
        config.layers,
        lambda m, n: isinstance(m, nn.Linear) and n.startswith(prefix + "."),
        what="decoder-block nn.Linear",
    )
    nm = config.nm
    if nm is not None:
        for n, m in chosen.items():
            if m.in_features % nm[1]:
                raise ConfigError(
                    f"pattern {config.pattern!r}: layer '{n}' has {m.in_features} inputs, not a multiple of "
                    f"M={nm[1]}, so the pattern does not tile it; add it to layers: {{exclude: [...]}}",
                    field="pattern",
                )
    return prefix, chosen


def keep_mask(scores: torch.Tensor, config: LMPruneConfig, scope: str = "row") -> torch.Tensor:
    """Bool mask (True = kept) of a Linear's scores ``(out, in)``; higher score = more important.

    ``row``: every output row loses exactly ``round(sparsity · in)`` weights (Wanda's
    comparison group: an output's inputs compete only with each other). ``layer``:
    the layer loses exactly ``round(sparsity · out · in)``. An N:M pattern overrides both.
    Ties go to the earlier position (stable sort), so masks are deterministic.
    """
    nm = config.nm
    if nm is not None:
        return nm_keep(scores, *nm)
    s = config.target_sparsity
    if scope == "layer":
        return topk_keep(scores, s)
    k = round(s * scores.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    order = torch.sort(scores, dim=1, stable=True).indices[:, :k]
    return keep.scatter_(1, order, False)


def block_names(prefix: str, index: int, chosen: dict[str, nn.Module]) -> list[str]:
    """The selected Linears of block ``index``, by their names inside the block."""
    head = f"{prefix}.{index}."
    return [n[len(head) :] for n in chosen if n.startswith(head)]
