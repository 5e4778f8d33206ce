"""Model registry: name → builder, with the spec needed to rebuild a model from its file.

Builders come in two levels (as in torchtune): parametric ones (``mlp``,
``resnet_cifar``) and zero-argument presets (``lenet300_100``, ``resnet20``…).
:func:`create_model` records ``{"name", "kwargs"}`` on the model as
``model.slimtorch_spec`` so :mod:`slimtorch.io` can save the architecture as
plain JSON next to the tensors. Users register their own builders the same way.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

from torch import nn

from slimtorch.core.errors import ConfigError
from slimtorch.core.registry import Registry

ModelBuilder = Callable[..., nn.Module]

MODELS: Registry[ModelBuilder] = Registry("model")


def register_model(name: str) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder ``fn(**kwargs) -> nn.Module`` under ``name``.

    Raises:
        ValueError: ``name`` is already registered.
    """
    return MODELS.register(name)


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return MODELS.names()


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model and attach its spec.

    Args:
        name: a name from :func:`list_models`.
        **kwargs: builder arguments; must be JSON-able (tuples are stored as lists).

    Returns:
        The model, with ``model.slimtorch_spec = {"name": name, "kwargs": kwargs}``.

    Raises:
        ConfigError: unknown name (the message lists the available ones), or
            arguments the builder does not take or that are not JSON-able.
    """
    builder = MODELS.get(name)
    params = inspect.signature(builder).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ConfigError(
                f"model '{name}' got unknown argument(s) {', '.join(unknown)}; "
                f"it takes: {', '.join(params) or '(no arguments)'}",
                field=unknown[0],
            )
    try:
        spec_kwargs = json.loads(json.dumps(kwargs))
    except TypeError as exc:
        raise ConfigError(f"model '{name}': arguments must be JSON-able to be saved ({exc})", field=name) from None
    try:
        model = builder(**kwargs)
    except TypeError as exc:  # e.g. a missing required argument
        raise ConfigError(f"model '{name}': {exc}", field=name) from None
    model.slimtorch_spec = {"name": name, "kwargs": spec_kwargs}
    return model
