"""Frozen, validated configs.

Every transform takes one config object: a frozen pydantic model that rejects
unknown keys. Configs round-trip through plain dicts (``to_dict`` /
``Cls.from_dict``), so a recipe file is only data: resolving which config class a
dict belongs to goes through a :class:`~slimtorch.core.registry.Registry`, never
through an importable dotted path.
"""

from __future__ import annotations

import typing
from typing import Any, TypeVar

import pydantic

from slimtorch.core.errors import ConfigError

T = TypeVar("T", bound="FrozenConfig")


class FrozenConfig(pydantic.BaseModel):
    """Base class of all configs: immutable, strict about unknown keys.

    Every way in raises the same :class:`ConfigError` naming the leaf field:
    ``Cls(**fields)``, ``Cls.from_dict(d, where)`` and :func:`coerce` (what the
    transforms call on their ``config`` argument) all end in :func:`_config_error`.
    Subclasses raise ``ConfigError`` (or ``ValueError``) from their validators and
    override none of this.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise _config_error(type(self), exc, "") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the config."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> typing.Self:
        """Validate ``data`` into this config, raising :class:`ConfigError` naming the field."""
        return validate_config(cls, data, where)

    def replace(self, **changes: Any) -> typing.Self:
        """A copy with some fields changed, validated again."""
        return validate_config(type(self), {**self.to_dict(), **changes})


def _loc_to_path(where: str, loc: tuple) -> str:
    path = where
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "<root>"


def _holder(cls: type[pydantic.BaseModel], loc: tuple) -> type[pydantic.BaseModel] | None:
    """The (nested) config class whose field list holds the last part of ``loc``; ``None`` if unknown.

    ``("train", "threads")`` in a DistillConfig is looked up in TrainConfig, so an unknown nested
    key is answered with the fields of its own level, not the top level's.
    """
    for part in loc[:-1]:
        if isinstance(part, int):
            continue  # an item of a list / tuple field: same item type
        field = cls.model_fields.get(part) or next((f for f in cls.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        models = [t for t in _types_in(field.annotation) if isinstance(t, type) and issubclass(t, pydantic.BaseModel)]
        if len(models) != 1:
            return None  # a union of configs (or none): which one the user meant is not known here
        cls = models[0]
    return cls


def _types_in(annotation: Any) -> list[Any]:
    """``annotation`` and the types inside it (``X | None``, ``tuple[X, ...]``, ``dict[str, X]``)."""
    args = typing.get_args(annotation)
    return [annotation] if not args else [t for a in args for t in _types_in(a)]


def _join(parent: str, child: str) -> str:
    return child if parent == "<root>" else f"{parent}.{child}"


def _nested(inner: ConfigError, where: str, loc: tuple) -> ConfigError:
    """A nested config's validator raised ``inner``: name the leaf field (``stages[0].prune.sparsity``), not its parent.

    ``inner.field`` is relative to the validated field, or (when the nested config was
    told its name, as ``PruneConfig.from_dict(v, "prune")`` is) to the model holding it.
    """
    path, msg = _loc_to_path(where, loc), str(inner)
    last = str(loc[-1]) if loc else None
    if last is not None and (inner.field == last or inner.field.startswith(last + ".")):
        parent = _loc_to_path(where, loc[:-1])
        full = _join(parent, inner.field)
        if msg.startswith(f"{last}: "):
            msg = f"{_join(parent, last)}: {msg[len(last) + 2 :]}"
        else:
            msg = msg.replace(f"'{inner.field}'", f"'{full}'", 1)
    else:
        full = _join(path, inner.field)
        msg = msg.replace(f"'{inner.field}'", f"'{full}'", 1)
    return ConfigError(msg, field=full)


def validate_config(cls: type[T], data: Any, where: str = "") -> T:
    """Validate ``data`` (a dict or an instance) into ``cls``.

    Raises:
        ConfigError: one error naming the first offending field, the problem and,
            for literal choices, the allowed values.
    """
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where or 'config'}: expected a {cls.__name__} or a dict of its fields (None: the defaults), "
            f"got {type(data).__name__}",
            field=where or "config",
        )
    try:
        return cls.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _config_error(cls, exc, where) from None


def _config_error(cls: type[pydantic.BaseModel], exc: pydantic.ValidationError, where: str) -> ConfigError:
    """Pydantic's first error as one :class:`ConfigError` whose ``field`` is the dotted path of the leaf."""
    err = exc.errors()[0]
    path = _loc_to_path(where, tuple(err["loc"]))
    inner = (err.get("ctx") or {}).get("error")
    if isinstance(inner, ConfigError) and inner.field and inner.field != "<root>":
        return _nested(inner, where, tuple(err["loc"]))
    if err["type"] == "extra_forbidden":
        holder = _holder(cls, tuple(err["loc"]))
        allowed = ", ".join(sorted(f.alias or n for n, f in holder.model_fields.items())) if holder else ""
        msg = f"unknown field '{path}'" + (f"; allowed fields here: {allowed}" if allowed else "")
    else:
        got = err.get("input")
        got_s = "" if isinstance(got, dict) else f" (got {got!r})"
        msg = f"invalid value for '{path}': {err['msg']}{got_s}"
    if len(exc.errors()) > 1:
        msg += f" [+{len(exc.errors()) - 1} more problem(s)]"
    return ConfigError(msg, field=path)


def coerce(config_cls: type[T], config: Any, where: str = "") -> T:
    """A ``config_cls`` from an instance, a dict or ``None`` (the defaults): what every transform accepts.

    The same path as :func:`validate_config` (one rule, one wording for every verb).

    Raises:
        ConfigError: a dict with a wrong field (named), or an object of another type.
    """
    return validate_config(config_cls, config, where)
