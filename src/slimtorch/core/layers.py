"""Which layers a transform touches: one selection, one function, one error for every technique.

Every technique's config has the same field, ``layers: {include: [...], exclude: [...]}``
(:class:`LayerSelection`), fnmatch patterns over module names (``model.named_modules()``),
and every technique picks its layers with :func:`select`. Before this, seven names meant
"which layers" (``include`` / ``exclude``, ``layers`` / ``skip``, ``ignored_layers``,
``exclude`` again in the language-model methods...) and two selection functions disagreed
on what an empty match meant, one raising and one quietly doing nothing.

The rule now: a pattern that matches nothing is an error naming it. An ``include``
pattern must match a layer the technique works on; an ``exclude`` pattern must match
some module of the model (a typo in an exclusion would otherwise silently change the
layer it meant to protect); a selection that leaves nothing is an error too. Each
message lists a few real layer names, so the fix is one look away.

The old field names are refused with the new form (:func:`refuse_old_fields`), not
accepted beside it: two spellings of one setting would be one more thing to keep apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

import pydantic
from pydantic import Field
from torch import nn

from slimtorch.core.config import FrozenConfig, validate_config
from slimtorch.core.errors import ConfigError

FilterFn = Callable[[nn.Module, str], bool]
Kinds = type | tuple[type, ...] | Callable[[nn.Module, str], bool]

# Old field -> the new form, for the error that replaces each of them.
OLD_FIELDS = {
    "include": "layers: {include: [...]}",
    "exclude": "layers: {exclude: [...]}",
    "skip": "layers: {exclude: [...]}",
    "ignored_layers": "layers: {exclude: [...]}",
}


class LayerSelection(FrozenConfig):
    """Which layers a technique touches.

    Attributes:
        include: fnmatch patterns over module names (``"features.*"``, ``"fc1"``); ``None``
            (the default): every layer the technique works on. Each pattern must match at
            least one such layer.
        exclude: patterns left alone, applied after ``include``. Each must match some
            module of the model.
    """

    include: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)

    @pydantic.field_validator("include", "exclude", mode="before")
    @classmethod
    def _patterns(cls, v: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(v, str):  # a bare string would be read as a list of one-character patterns
            raise ConfigError(
                f"invalid value for '{info.field_name}': a list of patterns, e.g. [{v!r}], got the string {v!r}",
                field=info.field_name,
            )
        return v

    def picks(self, *names: str) -> bool:
        """Whether a layer known by any of ``names`` is selected: one included (or no ``include``), none excluded.

        A layer can have several names (ONNX Runtime's nodes: the node's own and its module's).
        """
        included = self.include is None or any(matches(n, self.include) for n in names)
        return included and not any(matches(n, self.exclude) for n in names)


def as_selection(value: Any, field: str = "layers") -> LayerSelection:
    """A :class:`LayerSelection` from an instance, its dict or ``None`` (every layer).

    Raises:
        ConfigError: a list of patterns (the old form of ``layers``): the message shows the new one.
    """
    if isinstance(value, (list, tuple)):
        raise ConfigError(
            f"'{field}' is a selection now: write {field}: {{include: {list(value)!r}}} "
            f"(or {{exclude: [...]}} for the layers to leave alone)",
            field=field,
        )
    return validate_config(LayerSelection, value, field)


def refuse_old_fields(data: Any) -> Any:
    """A config's ``mode="before"`` check: an old layer-selection field is an error showing the new form."""
    if isinstance(data, dict):
        for old, new in OLD_FIELDS.items():
            if old in data:
                raise ConfigError(f"'{old}' was replaced by {new}", field=old)
        if isinstance(data.get("layers"), (list, tuple)):
            as_selection(data["layers"])
    return data


class SelectsLayers(FrozenConfig):
    """Base of every config with a ``layers`` selection: the field, and the error for the old names."""

    layers: LayerSelection = Field(default_factory=LayerSelection)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _old_layer_fields(cls, data: Any) -> Any:
        return refuse_old_fields(data)


def matches(name: str, patterns: Iterable[str]) -> bool:
    """``name`` equals or fnmatch-matches one of ``patterns``.

    Equality first: module names such as ``"lstm[layer 0]"`` hold fnmatch's brackets.
    """
    return any(name == p or fnmatchcase(name, p) for p in patterns)


def few(names: Iterable[str], n: int = 8) -> str:
    """Up to ``n`` distinct names for an error message, and how many there are in all."""
    names = list(dict.fromkeys(names))
    if not names:
        return "(none)"
    more = f", … ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _kind_test(kinds: Kinds) -> tuple[Callable[[nn.Module, str], bool], str]:
    if isinstance(kinds, type):
        kinds = (kinds,)
    if isinstance(kinds, tuple):
        return (lambda m, _n: isinstance(m, kinds)), "/".join(t.__name__.strip("_").removesuffix("Nd") for t in kinds)
    return kinds, "layer"


def select(
    model: nn.Module,
    selection: LayerSelection | dict | None,
    kinds: Kinds,
    *,
    filter_fn: FilterFn | None = None,
    what: str | None = None,
    field: str = "layers",
    may_miss: Iterable[str] = (),
) -> dict[str, nn.Module]:
    """name -> module of the layers ``selection`` picks among those of ``kinds``, in model order.

    Args:
        selection: a :class:`LayerSelection`, its dict, or ``None`` (every layer of ``kinds``).
        kinds: the module types the technique works on, or ``kinds(module, name) -> bool``.
        filter_fn: ``filter_fn(module, name) -> bool``, applied on top of the patterns.
        what: how the messages call a layer of ``kinds`` (default: the type names).
        field: the config field the messages name.
        may_miss: exclude patterns that are a technique's default (``lm_head`` of the
            weight-only quantizers): a model without such a layer is not a typo.

    Raises:
        ConfigError: an ``include`` pattern matches no layer of ``kinds``, an ``exclude``
            pattern matches no module, or nothing is left; names the pattern and lists layers.
    """
    sel = as_selection(selection, field)
    is_kind, label = _kind_test(kinds)
    label = what or label
    modules = list(model.named_modules())  # the model itself ("") too: a bare nn.Linear is one layer
    candidates = [(n, m) for n, m in modules if is_kind(m, n)]
    names = [n or "<the model itself>" for n, _ in candidates]
    for p in sel.include or []:
        if not any(matches(n, [p]) for n in names):
            others = [f"{n} ({type(m).__name__})" for n, m in modules if n and matches(n, [p])]
            why = f"matches only {few(others, 4)}, not a {label}" if others else f"matches no {label}"
            raise ConfigError(
                f"'{field}.include' pattern '{p}' {why}; the model's {label} layers: {few(names)}",
                field=f"{field}.include",
            )
    skip_check = set(may_miss)
    for p in sel.exclude:
        if p not in skip_check and not any(matches(n, [p]) for n, _ in modules if n):
            raise ConfigError(
                f"'{field}.exclude' pattern '{p}' matches no module of the model (a typo here would leave "
                f"the layer it meant in the selection); the model's {label} layers: {few(names)}",
                field=f"{field}.exclude",
            )
    chosen = {n: m for n, m in candidates if sel.picks(n) and (filter_fn is None or filter_fn(m, n))}
    if not chosen:
        include = "all" if sel.include is None else sel.include
        given = f"include={include}, exclude={sel.exclude}" + (" and filter_fn" if filter_fn else "")
        raise ConfigError(
            f"'{field}' selects no {label} ({given}); the model's {label} layers: {few(names)}",
            field=field,
        )
    return chosen
