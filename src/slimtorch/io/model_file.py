"""Model files: safetensors tensors + a JSON architecture description.

A model file is a safetensors file (no pickle: tensors and a string→string
metadata map only). The metadata holds

* ``format`` / ``version``: so an old or foreign file is rejected clearly;
* ``arch``: the zoo spec ``{"name": ..., "kwargs": {...}}`` the model was built
  from (``model.slimtorch_spec``); structural edits need no extra record because
  every tensor is stored with its current shape and :mod:`slimtorch.io.resize`
  rebuilds layers to those shapes on load;
* ``sparse``: tensors stored as a packed bitmask plus their non-zero values.
  A pruned model therefore really shrinks on disk: a dense fp32 weight costs
  32 bits per entry, the sparse form 1 bit per entry plus 32 bits per non-zero,
  which wins below ~97 % density; we switch at 90 % to keep dense loading
  for nearly-dense tensors.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from slimtorch.core.errors import ConfigError, FormatError, UnsupportedModelError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.io.fold import effective_state_dict
from slimtorch.io.resize import resize_to_shapes

FORMAT = "slimtorch.model"
VERSION = "1"
_MASK_SUFFIX = ".__mask__"
_SPARSE_MAX_DENSITY = 0.9


def _pack_sparse(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = t.reshape(-1)
    nz = flat != 0
    bits = np.packbits(nz.numpy().astype(np.uint8))
    return flat[nz].clone(), torch.from_numpy(bits)


def _unpack_sparse(values: torch.Tensor, bits: torch.Tensor, shape: list[int], name: str) -> torch.Tensor:
    ok = isinstance(shape, list) and len(shape) <= 32 and all(type(d) is int and 0 <= d < (1 << 62) for d in shape)  # noqa: E721
    if not ok:
        raise FormatError(f"sparse tensor '{name}': invalid shape {shape!r} (expected a list of non-negative ints)")
    numel = math.prod(shape)
    if bits.dtype != torch.uint8 or bits.ndim != 1 or values.ndim != 1:
        raise FormatError(f"sparse tensor '{name}': mask must be 1-D uint8 and values 1-D")
    if bits.numel() != (numel + 7) // 8:
        raise FormatError(f"sparse tensor '{name}': mask has {bits.numel()} bytes, expected {(numel + 7) // 8}")
    mask = np.unpackbits(bits.numpy(), count=numel).astype(bool)
    if int(mask.sum()) != values.numel():
        raise FormatError(f"sparse tensor '{name}': mask has {int(mask.sum())} ones but {values.numel()} values")
    out = torch.zeros(numel, dtype=values.dtype)
    out[torch.from_numpy(mask)] = values
    return out.reshape(shape)


def model_to_bytes(
    model: nn.Module,
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    sparse: bool = True,
) -> bytes:
    """Serialise ``model`` (transforms folded) into the bytes of a model file."""
    spec = spec if spec is not None else getattr(model, "slimtorch_spec", None)
    state = effective_state_dict(model)
    tensors: dict[str, torch.Tensor] = {}
    sparse_shapes: dict[str, list[int]] = {}
    seen: set[int] = set()
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        if t.numel() and t.untyped_storage().data_ptr() in seen:
            t = t.clone()  # tied weights: safetensors stores each name on its own; loading re-ties them
        seen.add(t.untyped_storage().data_ptr())
        if (
            sparse
            and t.is_floating_point()
            and t.numel() >= 64
            and float((t != 0).float().mean()) <= _SPARSE_MAX_DENSITY
        ):
            values, bits = _pack_sparse(t)
            tensors[name] = values
            tensors[name + _MASK_SUFFIX] = bits
            sparse_shapes[name] = list(t.shape)
        else:
            tensors[name] = t
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "arch": json.dumps(spec),
        "sparse": json.dumps(sparse_shapes),
        "user": json.dumps(metadata or {}),
    }
    from slimtorch.encode.format import canonical_safetensors  # sorted header: same model, same bytes

    return canonical_safetensors(st_save(tensors, metadata=meta))


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    spec: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    sparse: bool = True,
) -> Path:
    """Save ``model`` to ``path`` atomically (safetensors + JSON architecture).

    Args:
        model: the model; parametrizations (masks, fake-quant) are folded in the file only.
        spec: architecture description; defaults to ``model.slimtorch_spec`` (set by
            :func:`slimtorch.models.create_model`). Without one, loading needs ``model=``.
        metadata: extra JSON-able information stored beside (e.g. accuracy).
        sparse: store mostly-zero tensors as bitmask + values.
    """
    return atomic_write_bytes(path, model_to_bytes(model, spec, metadata, sparse))


def read_model_file(data: bytes, source: str = "<bytes>") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Parse model-file bytes into (dense state dict, header dict)."""
    if len(data) < 8:
        raise FormatError(f"{source}: file is too short to be a slimtorch model file")
    try:
        tensors = st_load(data)

        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # Only now look for pickle / zip magic: a valid safetensors header of 640 bytes
        # also starts with 80 02.
        if data[:1] == b"\x80" or data[:2] == b"PK":
            raise FormatError(
                f"{source}: this looks like a pickle / torch.save file, which slimtorch never loads "
                "(it can run code). Convert it with torch.load(..., weights_only=True) and save_model()."
            ) from None
        raise FormatError(f"{source}: not a valid safetensors file ({exc})") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise FormatError(f"{source}: not a slimtorch model file (no metadata)")
    if meta.get("format") != FORMAT:
        raise FormatError(f"{source}: not a slimtorch model file (format={meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise FormatError(
            f"{source}: model file version {meta.get('version')!r} is not supported "
            f"(this slimtorch reads version {VERSION}); upgrade slimtorch"
        )
    try:
        arch = json.loads(meta.get("arch", "null"))
        sparse = json.loads(meta.get("sparse", "{}"))
        user = json.loads(meta.get("user", "{}"))
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"{source}: corrupt metadata ({exc})") from None
    check_spec(arch, source)
    if not isinstance(sparse, dict) or not isinstance(user, dict):
        raise FormatError(f"{source}: corrupt metadata ('sparse' and 'user' must be JSON objects)")
    state: dict[str, torch.Tensor] = {}
    for name, t in tensors.items():
        if name.endswith(_MASK_SUFFIX):
            continue
        if name in sparse:
            bits = tensors.get(name + _MASK_SUFFIX)
            if bits is None:
                raise FormatError(f"{source}: sparse tensor '{name}' has no mask")
            state[name] = _unpack_sparse(t, bits, sparse[name], name)
        else:
            state[name] = t
    return state, {"arch": arch, "metadata": user}


def load_model(path: str | os.PathLike, model: nn.Module | str | None = None) -> nn.Module:
    """Load a model file written by :func:`save_model`.

    Args:
        path: the ``.safetensors`` model file.
        model: a model to load into (needed when the file has no spec, e.g. a
            user's own class that was never registered), or a class reference
            ``"pkg.module:Name"`` to import and build with the kwargs the file records.
            Layers are resized to the stored shapes first.

    Returns:
        The model, in eval mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    state, header = read_model_file(path.read_bytes(), str(path))
    model = build_from_state(state, header["arch"], model, str(path))
    model.slimtorch_file_metadata = header["metadata"]
    return model


def build_from_state(
    state: dict[str, torch.Tensor], spec: dict[str, Any] | None, model: nn.Module | str | None, source: str
) -> nn.Module:
    """Build the model from its ``spec`` (or take ``model``), resize layers to ``state``, load it.

    Shared by every file format that stores a spec (model files, ``.slim`` files).

    Args:
        model: ``None`` (build from the file's spec), a module to load into, or a class
            reference ``"pkg.module:Name"`` / ``"file.py:Name"``: the user's consent to import
            that class, built with the kwargs the file records.
    """
    if isinstance(model, str):
        model = _from_class_ref(model, spec, source)
    if model is None:
        if not spec:
            raise FormatError(
                f"{source}: the file has no architecture description; "
                "pass the model to load into, e.g. load_model(path, model=MyNet())"
            )
        check_spec(spec, source)
        model = _build_checked(spec, sum(t.numel() for t in state.values()), source)
        model.slimtorch_spec = spec
    try:
        resize_to_shapes(model, {k: tuple(v.shape) for k, v in state.items()})
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (UnsupportedModelError, FormatError):
        raise
    except (IndexError, KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
        # resize / load_state_dict met tensors whose rank or size cannot fit the layer
        raise FormatError(
            f"{source}: tensors do not fit the architecture ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if missing or unexpected:
        from slimtorch.models.user import key_diff

        raise FormatError(
            f"{source}: tensors do not match {type(model).__name__} ({key_diff(model.state_dict(), state)})"
        )
    return model.eval()


# A file's architecture may declare at most this many times the elements the file stores
# (plus a floor): structured pruning shrinks a conv by the square of the channel ratio,
# so 1024x covers ~97 % of channels removed, while a tampered spec asking for billions of
# parameters is refused before anything is allocated. Trusted outliers: pass model=.
BUILD_RATIO = 1024
BUILD_FLOOR = 1 << 22


def check_spec(spec: Any, source: str) -> None:
    """A spec read from a file is ``null``, a zoo spec ``{"name", "kwargs"}``, a user class
    ``{"class", "kwargs"}`` or a Hugging Face checkpoint ``{"hf", "task"}``."""
    if spec is None:
        return
    ok = isinstance(spec, dict) and isinstance(spec.get("kwargs", {}), dict)
    if ok and "class" in spec:
        ok = isinstance(spec["class"], str) and not set(spec) - {"class", "kwargs"}
    elif ok and "hf" in spec:
        ok = isinstance(spec["hf"], str) and isinstance(spec.get("task"), str) and not set(spec) - {"hf", "task"}
    else:
        ok = ok and isinstance(spec.get("name"), str) and not set(spec) - {"name", "kwargs"}
    if not ok:
        raise FormatError(
            f"{source}: corrupt architecture description {str(spec)[:200]!r} (expected "
            '{"name": ..., "kwargs": {...}}, {"class": ..., "kwargs": {...}} or '
            '{"hf": ..., "task": ...})'
        )


def _from_class_ref(ref: str, spec: dict[str, Any] | None, source: str) -> nn.Module | None:
    from slimtorch.models.user import import_class, instantiate

    import_class(ref)  # explicit: the caller named the class
    if spec is None:
        return instantiate(ref, {})
    check_spec(spec, source)
    if spec.get("class") != ref:
        raise FormatError(f"{source}: the file records the model {str(spec)[:200]}, not the class {ref!r}")
    return None  # built from the spec below, now that the class is allow-listed


def _spec_builder(spec: dict[str, Any], source: str):
    """A zero-argument builder for ``spec`` and its display name; a user class only from the allow-list."""
    if "hf" in spec:
        from slimtorch.models.hf import HFModelSource, build_hf_model

        src = HFModelSource.from_dict(spec, "arch")
        return (lambda: build_hf_model(src, load_weights=False)), f"Hugging Face {src.task} '{src.hf}'"
    if "class" in spec:
        from slimtorch.models.user import allowed_class, instantiate

        ref, kwargs = spec["class"], spec.get("kwargs", {})
        cls = allowed_class(ref)
        if cls is None:
            # a file never makes slimtorch import code: the user names the class
            raise FormatError(
                f"{source}: the model is of your class {ref!r} (kwargs {str(kwargs)[:200]}); slimtorch does not "
                "import code named by a file. Pass the model to load into (load(path, model=MyNet(...))), or name "
                f"the class to import: load(path, model={ref!r}) / the CLI's --class {ref}"
            )
        return (lambda: instantiate(ref, kwargs, cls)), repr(ref)
    from slimtorch.models import create_model

    name, kwargs = spec["name"], spec.get("kwargs", {})
    return (lambda: create_model(name, **kwargs)), repr(name)


def _build_checked(spec: dict[str, Any], stored: int, source: str) -> nn.Module:
    """Build a model from a file's spec, counting its parameters on the meta device first."""
    build, name = _spec_builder(spec, source)
    kwargs = spec.get("kwargs", {})
    try:
        with torch.device("meta"):
            probe = build()
        declared = sum(t.numel() for t in probe.state_dict().values())
    except Exception:  # the real build below reports the error (some builders cannot run on meta)
        declared = 0
    if declared > max(BUILD_FLOOR, BUILD_RATIO * stored):
        raise FormatError(
            f"{source}: the architecture {name} declares {declared} parameters but the file stores only "
            f"{stored} values; refusing to allocate it (if the file is trusted, build the model yourself "
            "and pass it as model=...)"
        )
    try:
        return build()
    except ConfigError as exc:
        raise FormatError(f"{source}: the file's architecture cannot be built: {exc}") from None
    except (TypeError, ValueError, RuntimeError, OverflowError, MemoryError, IndexError, KeyError) as exc:
        raise FormatError(
            f"{source}: the file's architecture {name} with arguments {str(kwargs)[:200]} cannot be built "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
