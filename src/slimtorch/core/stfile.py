"""safetensors files read and written one tensor (or a few rows) at a time, without memory-mapping.

The ``safetensors`` package maps a whole file and its writer serializes every
tensor in memory at once. Both are wrong for layer-streamed calibration
(:mod:`slimtorch.core.streamed`): pages of a mapped file that were read stay in
the process's resident set until the file is closed, so reading a model block
by block through one mapping ends up as resident as loading it; and writing the
result in one call needs all of it in memory. The format is simple (8-byte
little-endian header length, JSON header with each tensor's dtype, shape and
byte range, then the raw bytes), so this module reads with ``seek``/``readinto``
into a fresh tensor and writes from a list of byte producers, holding at most
one chunk. Files it writes are ordinary safetensors files.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from slimtorch.core.errors import FormatError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}
CHUNK = 16 << 20  # bytes copied per step


@dataclass(frozen=True)
class Entry:
    """One tensor of a file: where its bytes are (absolute offsets) and what they hold."""

    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_header(path: str | os.PathLike) -> tuple[dict[str, Entry], dict]:
    """(tensor name -> :class:`Entry`, the file's ``__metadata__``)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise FormatError(f"{path} is not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", head)
        try:
            header = json.loads(fh.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise FormatError(f"{path}: unreadable safetensors header ({exc})") from None
    meta = header.pop("__metadata__", None) or {}
    base = 8 + n
    entries = {}
    for name, h in header.items():
        if h["dtype"] not in DTYPES:
            raise FormatError(f"{path}: tensor {name} has dtype {h['dtype']}, which slimtorch does not read")
        s, e = h["data_offsets"]
        entries[name] = Entry(path, h["dtype"], tuple(h["shape"]), base + s, base + e)
    return entries, meta


def _read_into(fh: BinaryIO, start: int, out: torch.Tensor) -> None:
    fh.seek(start)
    view = memoryview(out.view(torch.uint8).reshape(-1).numpy())
    got = fh.readinto(view)
    if got != len(view):
        raise FormatError(f"{getattr(fh, 'name', 'file')}: tensor data ends early (read {got} of {len(view)} bytes)")


def read_tensor(entry: Entry) -> torch.Tensor:
    """The whole tensor, in a fresh buffer (nothing stays mapped)."""
    out = torch.empty(entry.shape, dtype=DTYPES[entry.dtype])
    with open(entry.path, "rb") as fh:
        _read_into(fh, entry.start, out)
    return out


def read_rows(entry: Entry, rows: torch.Tensor) -> torch.Tensor:
    """``tensor[rows]`` of a tensor of 1+ dims, reading only those rows (``rows`` sorted, unique)."""
    row_shape = entry.shape[1:]
    out = torch.empty((len(rows), *row_shape), dtype=DTYPES[entry.dtype])
    row_bytes = out[0].numel() * out.element_size() if len(rows) else 0
    with open(entry.path, "rb") as fh:
        k = 0
        rows_list = rows.tolist()
        while k < len(rows_list):  # contiguous runs in one read each
            j = k
            while j + 1 < len(rows_list) and rows_list[j + 1] == rows_list[j] + 1:
                j += 1
            _read_into(fh, entry.start + rows_list[k] * row_bytes, out[k : j + 1])
            k = j + 1
    return out


@dataclass(frozen=True)
class Out:
    """A tensor to write: its dtype name, shape, byte count and a function writing exactly those bytes."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    write: Callable[[BinaryIO], None]


def tensor_out(name: str, t: torch.Tensor) -> Out:
    """An :class:`Out` of an in-memory tensor."""
    t = t.detach().contiguous()
    return Out(
        name,
        NAMES[t.dtype],
        tuple(t.shape),
        t.numel() * t.element_size(),
        lambda fh: fh.write(memoryview(t.view(torch.uint8).reshape(-1).numpy())),
    )


def copy_out(name: str, entry: Entry, dtype: torch.dtype | None = None) -> Out:
    """An :class:`Out` copying a stored tensor chunk by chunk, converted to ``dtype`` on the way if given."""
    src = DTYPES[entry.dtype]
    dst = dtype or src
    if dst == src:

        def write(fh: BinaryIO) -> None:
            with open(entry.path, "rb") as inp:
                inp.seek(entry.start)
                left = entry.nbytes
                while left:
                    buf = inp.read(min(CHUNK, left))
                    if not buf:
                        raise FormatError(f"{entry.path}: tensor {name} ends early")
                    fh.write(buf)
                    left -= len(buf)

        return Out(name, entry.dtype, entry.shape, entry.nbytes, write)
    numel = 1
    for d in entry.shape:
        numel *= d
    in_size, out_size = torch.empty(0, dtype=src).element_size(), torch.empty(0, dtype=dst).element_size()

    def convert(fh: BinaryIO) -> None:
        step = max(1, CHUNK // in_size)
        with open(entry.path, "rb") as inp:
            for s in range(0, numel, step):
                part = torch.empty(min(step, numel - s), dtype=src)
                _read_into(inp, entry.start + s * in_size, part)
                fh.write(memoryview(part.to(dst).view(torch.uint8).numpy()))

    return Out(name, NAMES[dst], entry.shape, numel * out_size, convert)


def write_file(path: str | os.PathLike, outs: Iterable[Out], metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file from ``outs`` (in name order), one tensor's bytes at a time; not atomic by itself."""
    outs = sorted(outs, key=lambda o: o.name)
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    pos = 0
    for o in outs:
        header[o.name] = {"dtype": o.dtype, "shape": list(o.shape), "data_offsets": [pos, pos + o.nbytes]}
        pos += o.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the reference writer aligns the data to 8 bytes
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for o in outs:
            before = fh.tell()
            o.write(fh)
            if fh.tell() - before != o.nbytes:
                raise FormatError(f"{path}: tensor {o.name} wrote {fh.tell() - before} bytes, expected {o.nbytes}")
