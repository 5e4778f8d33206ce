"""Pruning config: which criterion, how much, where, in which pattern.

One frozen config describes a single pruning step. Schedules (iterative, AGP)
reuse it as the *final* target and derive intermediate targets with
:meth:`PruneConfig.at_progress`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from slimtorch.core.errors import ConfigError
from slimtorch.core.layers import SelectsLayers

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _check_fraction(value: float, field: str, allow_full: bool) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"invalid value for '{field}': sparsity must be in [0, 1], got {value!r}", field=field)
    if value == 1.0 and not allow_full:
        raise ConfigError(
            f"'{field}' = 1.0 would remove every weight of a layer (its output becomes constant); "
            "set allow_full=True if that is really what you want",
            field=field,
        )


class PruneConfig(SelectsLayers):
    """One unstructured (or N:M) pruning step.

    Attributes:
        method: importance criterion, a name in :data:`slimtorch.prune.CRITERIA`:
            ``magnitude`` (|w|), ``random`` (seeded baseline), ``taylor``
            (|w · dL/dw| summed over batches; needs data), ``activation``
            (|w| × L2 norm of the input feature, Wanda; needs data) or ``han``
            (per-layer threshold ``quality × std`` of the layer's remaining weights).
        sparsity: fraction of the selected weights to remove (ignored by ``han``).
        scope: ``layer``: every layer loses exactly ``sparsity`` of its weights;
            ``global``: one score threshold across all selected layers, so layers
            end up with different sparsities (total = ``sparsity``).
        pattern: ``unstructured`` or ``"N:M"`` (e.g. ``"2:4"``): in every group of M
            consecutive weights along the input dimension keep the N best; ``sparsity``
            and ``scope`` are then ignored (the sparsity is 1 - N/M).
        layers: ``{include: [...], exclude: [...]}``, fnmatch patterns over module names
            (``"fc*"``, ``"encoder.*"``; :class:`~slimtorch.core.layers.LayerSelection`); by
            default every Linear / Conv layer is pruned.
        per_layer: name pattern → sparsity overriding the default for matching
            layers (first matching pattern wins). In global scope these layers are
            pruned on their own and left out of the global pool.
        quality: Han et al.'s threshold multiplier for ``method="han"``.
        per_layer_quality: name pattern → quality, for ``han``.
        allow_full: permit sparsity 1.0 (a layer with no weights left).
        monotone: never revive a weight an earlier call pruned (the default; schedules
            rely on it). ``False`` recomputes masks from scratch.
        seed: seed of the ``random`` criterion.
        batches / batch_size: how much data ``taylor`` / ``activation`` look at.
        protect: in ``layer`` scope, cap the sparsity of the first conv (50 %), the last
            Linear (75 %) and layers under ``small_layer_weights`` weights (50 %) that have no
            ``per_layer`` value (:mod:`slimtorch.prune.protect`, after Han et al. 2015).
        small_layer_weights: the size under which a layer counts as small.
    """

    method: str = "magnitude"
    sparsity: Fraction = 0.5
    scope: Literal["layer", "global"] = "layer"
    pattern: str = "unstructured"
    per_layer: dict[str, Fraction] = Field(default_factory=dict)
    quality: float = Field(1.0, ge=0)
    per_layer_quality: dict[str, Annotated[float, Field(ge=0.0)]] = Field(default_factory=dict)
    allow_full: bool = False
    monotone: bool = True
    seed: int = 0
    batches: int = Field(8, ge=1)
    batch_size: int = Field(128, ge=1)
    protect: bool = True
    small_layer_weights: int = Field(2048, ge=0)

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if v == "unstructured":
            return v
        parts = v.split(":")
        ok = len(parts) == 2 and all(p.strip().isdigit() for p in parts)
        if not ok or not 0 < int(parts[0]) < int(parts[1]):
            raise ValueError(f"pattern must be 'unstructured' or 'N:M' with 0 < N < M (e.g. '2:4'), got {v!r}")
        return f"{int(parts[0])}:{int(parts[1])}"

    @model_validator(mode="after")
    def _fractions(self) -> PruneConfig:
        # Raised directly (not via pydantic) so the error names the exact field.
        _check_fraction(self.sparsity, "sparsity", self.allow_full)
        for pat, s in self.per_layer.items():
            _check_fraction(s, f"per_layer.{pat}", self.allow_full)
        return self

    @property
    def nm(self) -> tuple[int, int] | None:
        """``(N, M)`` for an N:M pattern, else None."""
        if self.pattern == "unstructured":
            return None
        n, m = self.pattern.split(":")
        return int(n), int(m)

    def at_progress(self, c: float, initial: float = 0.0) -> PruneConfig:
        """The intermediate target a schedule reaches at progress ``c`` in [0, 1].

        Every sparsity ``s`` (default and per layer) becomes ``initial + (s - initial) c``;
        for ``han`` the quality multiplier is scaled by ``c`` instead.
        """
        c = min(max(float(c), 0.0), 1.0)
        if self.method == "han":
            return self.replace(
                quality=self.quality * c, per_layer_quality={k: q * c for k, q in self.per_layer_quality.items()}
            )

        def interp(s: float) -> float:
            return initial + (s - initial) * c if s >= initial else s

        return self.replace(sparsity=interp(self.sparsity), per_layer={k: interp(s) for k, s in self.per_layer.items()})
