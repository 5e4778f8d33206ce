"""Users' own model classes: ``{class: "pkg.module:Name" | "path/file.py:Name", kwargs, weights}``.

Importing a class runs its module's code, so it only ever happens because the
user named the class: in a recipe's ``model: {class: ...}``, with the CLI's
``--class``, or in Python with :func:`import_class` / ``slimtorch.load(path,
model="pkg.module:Name")``. A model *file* never causes an import by itself:
it records ``{"class": ..., "kwargs": ...}`` and is rebuilt from that only if
the class is on this process's allow-list, i.e. was already imported by one of
those explicit routes (the allow-list idea of torchao's ``core/config.py``).

Weights may be a slimtorch model file, a ``.slim`` file, a plain safetensors
file or a PyTorch state-dict file; the last is read with
``torch.load(weights_only=True)`` only, which cannot run code.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from pathlib import Path
from typing import Any

import pydantic
import torch
from pydantic import Field, field_validator
from torch import nn

from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError, FormatError

# class reference -> class; filled only by import_class (an explicit user action)
_ALLOWED: dict[str, type[nn.Module]] = {}

# wrappers that checkpoints commonly nest a state dict under
_NESTED_KEYS = ("state_dict", "model_state_dict", "model_state", "model")


class UserModelSource(FrozenConfig):
    """``model: {class: "pkg.module:Name", kwargs: {...}, weights: path}``.

    Attributes:
        class_: ``"package.module:ClassName"`` (importable from ``sys.path``) or
            ``"path/to/file.py:ClassName"`` (relative to the working directory).
            Importing it runs that module's code.
        kwargs: constructor arguments (JSON-able: they are stored in model files).
        weights: optional slimtorch model file, ``.slim``, safetensors or PyTorch
            state-dict file (``torch.load(weights_only=True)``).
        ignore_keys: fnmatch patterns of keys in ``weights`` to drop before the strict
            check, e.g. a training loss's parameters stored beside the model's.
    """

    model_config = pydantic.ConfigDict(
        frozen=True,
        extra="forbid",
        validate_default=True,
        validate_by_alias=True,
        validate_by_name=True,
        serialize_by_alias=True,
    )

    class_: str = Field(..., alias="class", min_length=3)
    kwargs: dict[str, Any] = {}
    weights: str | None = Field(None, min_length=1)
    ignore_keys: tuple[str, ...] = ()

    @field_validator("class_")
    @classmethod
    def _ref_shape(cls, v: str) -> str:
        split_ref(v)
        return v


def split_ref(ref: str) -> tuple[str, str]:
    """``"a.b:Name"`` -> ``("a.b", "Name")``; raises ``ValueError`` naming the expected shape."""
    module, sep, name = ref.rpartition(":")
    if not sep or not module or not name.isidentifier():
        raise ValueError(
            f"class reference {ref!r} must look like 'package.module:ClassName' or 'path/to/file.py:ClassName'"
        )
    return module, name


def _import_module(module: str, ref: str):
    if module.endswith(".py"):
        path = Path(module).resolve()
        if not path.is_file():
            raise ConfigError(f"model class {ref!r}: file '{module}' does not exist", field="model.class")
        # a stable, unique module name per file, so importing twice gives the same class
        name = f"slimtorch_user_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[name]
            raise
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"model class {ref!r}: cannot import module '{module}' ({exc}); "
            "install it, add its folder to PYTHONPATH, or give a file path 'path/to/file.py:ClassName'",
            field="model.class",
        ) from None


def import_class(ref: str) -> type[nn.Module]:
    """Import the ``nn.Module`` subclass named by ``ref`` (runs its module) and allow-list it.

    Raises:
        ConfigError: malformed reference, missing module/file/name, or not an ``nn.Module`` class.
    """
    if ref in _ALLOWED:
        return _ALLOWED[ref]
    try:
        module, name = split_ref(ref)
    except ValueError as exc:
        raise ConfigError(str(exc), field="model.class") from None
    mod = _import_module(module, ref)
    cls = getattr(mod, name, None)
    if cls is None:
        have = sorted(k for k, v in vars(mod).items() if inspect.isclass(v) and issubclass(v, nn.Module))
        raise ConfigError(
            f"model class {ref!r}: '{module}' has no '{name}'; nn.Module classes there: {', '.join(have) or '(none)'}",
            field="model.class",
        )
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model class {ref!r} is not an nn.Module subclass ({type(cls).__name__})", field="model.class"
        )
    _ALLOWED[ref] = cls
    return cls


def allowed_class(ref: str) -> type[nn.Module] | None:
    """The class for ``ref`` if the user already imported it explicitly in this process, else ``None``."""
    return _ALLOWED.get(ref)


def instantiate(ref: str, kwargs: dict[str, Any], cls: type[nn.Module] | None = None) -> nn.Module:
    """Build ``ref(**kwargs)`` and record ``{"class", "kwargs"}`` as its ``slimtorch_spec``."""
    cls = cls or import_class(ref)
    try:
        spec_kwargs = json.loads(json.dumps(kwargs))
    except TypeError as exc:
        raise ConfigError(
            f"model class {ref!r}: kwargs must be JSON-able to be saved ({exc})", field="model.kwargs"
        ) from None
    try:
        model = cls(**kwargs)
    except TypeError as exc:  # wrong / missing constructor arguments
        sig = inspect.signature(cls.__init__)
        raise ConfigError(
            f"model class {ref!r}: {exc}; its constructor is {cls.__name__}{sig}", field="model.kwargs"
        ) from None
    model.slimtorch_spec = {"class": ref, "kwargs": spec_kwargs}
    return model


def read_state_dict(path: str | Path) -> tuple[str, dict[str, torch.Tensor] | None, bytes]:
    """Tensors of a safetensors or PyTorch state-dict file (``None`` for a ``.slim`` file: decode it instead).

    Returns:
        ``(kind, state or None, raw bytes)`` with kind ``slim``, ``slimtorch`` (a slimtorch
        model file), ``safetensors`` or ``torch``.

    Raises:
        FileNotFoundError, FormatError: missing file; not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file '{path}' does not exist")
    data = path.read_bytes()
    from slimtorch.encode.model import is_slim

    if is_slim(data):
        return "slim", None, data
    if data[:2] == b"PK" or data[:1] == b"\x80":  # torch.save zip / legacy pickle
        return "torch", _torch_state(path), data
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    try:
        state = st_load(data)
    except (SafetensorError, ValueError) as exc:
        raise FormatError(f"{path}: neither a safetensors nor a PyTorch state-dict file ({exc})") from None
    from slimtorch.io.model_file import FORMAT, read_model_file

    header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
    if (header.get("__metadata__") or {}).get("format") == FORMAT:
        state, _ = read_model_file(data, str(path))  # sparse tensors unpacked
        return "slimtorch", state, data
    return "safetensors", state, data


def _torch_state(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise FormatError(
            f"{path}: torch.load(weights_only=True) refused it: it holds Python objects, not only tensors "
            "(a whole pickled model?), and slimtorch never unpickles objects. Save model.state_dict() instead."
        ) from exc
    except (RuntimeError, EOFError, ValueError) as exc:
        raise FormatError(f"{path}: not a readable PyTorch file ({str(exc)[:200]})") from None
    if isinstance(obj, dict) and not _is_tensor_dict(obj):
        nested = [k for k in _NESTED_KEYS if _is_tensor_dict(obj.get(k))]
        if nested:
            obj = obj[nested[0]]
    if not _is_tensor_dict(obj):
        keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise FormatError(
            f"{path}: expected a state dict (name -> tensor), found {keys}; "
            f"save model.state_dict() (or a dict with it under one of {', '.join(_NESTED_KEYS)})"
        )
    return dict(obj)


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def key_diff(expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor], limit: int = 8) -> str:
    """One line describing missing / unexpected / shape-mismatched keys (empty when they match)."""

    def show(names: list[str]) -> str:
        more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = [
        f"{k} {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(got))
        if tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"missing: {show(missing)}")
    if unexpected:
        parts.append(f"unexpected: {show(unexpected)}")
    if shapes:
        parts.append(f"shape mismatch: {show(shapes)}")
    return "; ".join(parts)


def load_weights_strict(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, ignore: tuple[str, ...] = ()
) -> nn.Module:
    """Load ``state`` into ``model`` requiring the same keys and shapes; a DDP ``module.`` prefix is dropped.

    Args:
        ignore: fnmatch patterns of keys of ``state`` to drop first.
    """
    import fnmatch

    state = {k: v for k, v in state.items() if not any(fnmatch.fnmatch(k, p) for p in ignore)}
    expected = model.state_dict()
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in expected):
        state = {k[len("module.") :]: v for k, v in state.items()}
    diff = key_diff(expected, state)
    if diff:
        raise FormatError(
            f"{source}: weights do not match {type(model).__name__} ({diff}); check the class and its kwargs "
            "match the ones the weights were trained with (keys that are not the model's: ignore_keys)"
        )
    model.load_state_dict(state, strict=True)
    return model


def check_user_source(src: UserModelSource) -> None:
    """Import the class and check ``kwargs`` against its constructor without building it (``slimtorch validate``)."""
    cls = import_class(src.class_)
    try:
        inspect.signature(cls).bind(**src.kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model.kwargs: {exc} for {cls.__name__}{inspect.signature(cls)}", field="model.kwargs"
        ) from None
    if src.weights is not None and not Path(src.weights).is_file():
        raise FileNotFoundError(f"model.weights: '{src.weights}' does not exist")


def build_user_model(src: UserModelSource) -> nn.Module:
    """Import ``src.class_``, build it with ``src.kwargs`` and load ``src.weights`` if given (eval mode)."""
    model = instantiate(src.class_, dict(src.kwargs))
    if src.weights is None:
        return model
    kind, state, data = read_state_dict(src.weights)
    spec = model.slimtorch_spec
    if kind == "slim":  # decode into the built model (layers resized to the stored shapes)
        from slimtorch.encode.model import load_packed

        model = load_packed(data, model)
    else:
        if kind == "slimtorch":
            # a slimtorch model file may hold a structurally pruned model: resize layers to it
            from slimtorch.io.resize import resize_to_shapes

            resize_to_shapes(model, {k: tuple(v.shape) for k, v in state.items()})
        load_weights_strict(model, state, src.weights, src.ignore_keys)
    model.slimtorch_spec = spec
    return model.eval()
