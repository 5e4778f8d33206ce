"""The ``.slim`` file: a Deep Compression model as a safetensors container.

Deep Compression (Han, Mao & Dally, ICLR 2016) ends with each layer stored as a
codebook, entropy-coded weight indices and entropy-coded sparse indices. A ``.slim``
file holds those per tensor, with no pickle anywhere:

* a safetensors container (``safetensors.numpy``): one uint8 payload tensor per model
  tensor (``p0``, ``p1``, ...), the concatenation of that tensor's sections;
* tensor kinds: ``shared`` (codebook + entropy-coded indices and sparse positions,
  :mod:`slimtorch.encode.index_coding`), ``quant`` (group-quantized codes with
  scales and zeros, :mod:`slimtorch.encode.quant_tensor`: a language model's
  weight-only grid) and ``raw``;
* a ``manifest`` tensor (uint8): zlib-compressed JSON ``{"arch": ..., "tensors": [...]}``
  with, per tensor, its name, shape, kind, coding scheme, bits, codebook size,
  section layout, payload name and payload SHA-256; ``arch`` is the caller's JSON
  (e.g. the model spec to rebuild it);
* metadata (str -> str): ``format`` = ``slimtorch.slim``, ``version`` = ``2``,
  ``manifest_sha256`` (of the compressed manifest bytes).

Version 2 compresses the manifest because on the small networks of the paper it was
a seventh of the file: LeNet-300-100's uncompressed JSON manifest (escaped inside the
safetensors header, with an ``arch`` copy and checksum beside it) took 3.5 KB of a
24 KB file. Version 1 files (manifest and arch as JSON strings in the metadata) are
still read, and ``pack_state(..., version=1)`` still writes them for older readers.

Reading checks, in order and before decoding anything: container structure, magic,
version, manifest checksum, arch checksum, every payload's checksum, then each
declared size against sane bounds and the payload length. Any failure is a
:class:`~slimtorch.core.errors.FormatError` saying which check failed.
:class:`SlimReader` reads a file tensor by tensor instead (container checks on
opening, each payload's checksum when it is read), for models too large to
decode at once.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from slimtorch.core.errors import FormatError
from slimtorch.core.fileio import atomic_write_bytes
from slimtorch.encode.index_coding import best_encoding, decode_shared
from slimtorch.encode.quant_tensor import QuantTensor, best_quant_encoding, decode_quant
from slimtorch.encode.tensor import SharedTensor

MAGIC = "slimtorch.slim"
VERSION = "2"
READ_VERSIONS = ("1", "2")
MANIFEST = "manifest"  # v2: the compressed manifest's tensor (no payload may take the name)
METHODS = ("auto", "huffman", "ans")
MAX_ELEMENTS = 1 << 28  # default cap per tensor (1 GiB of float32); raise via max_elements
MAX_HEADER = 64 << 20  # safetensors JSON header cap
RAW_DTYPES = (
    "bool",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
)
SECTION_DTYPES = ("uint8", "uint16", "uint32", "uint64", "float32")


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor; bfloat16 has no numpy dtype: widen (lossless)
        value = value.detach().to("cpu")
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _raw_entry(arr: np.ndarray) -> tuple[dict, dict[str, np.ndarray]]:
    if arr.dtype.name not in RAW_DTYPES:
        raise ValueError(f"cannot store dtype {arr.dtype} raw; allowed: {', '.join(RAW_DTYPES)}")
    stored = arr
    if arr.dtype == np.float32:
        # float16 only when every value survives the round trip bit for bit.
        half = arr.astype(np.float16)
        if np.array_equal(half.astype(np.float32).view(np.uint32), arr.view(np.uint32)):
            stored = half
    stored = np.ascontiguousarray(stored).reshape(-1)
    meta = {"kind": "raw", "dtype": arr.dtype.name, "stored": stored.dtype.name}
    return meta, {"data": stored.astype(stored.dtype.newbyteorder("<"), copy=False)}


def pack_state(
    state: dict[str, SharedTensor | QuantTensor | np.ndarray],
    arch: dict | None = None,
    method: str = "auto",
    *,
    index: str = "auto",
    gap_bits: int | None = None,
    version: int = 2,
) -> bytes:
    """Serialize a compressed state dict to ``.slim`` bytes.

    Args:
        state: name -> :class:`SharedTensor` (entropy-coded), :class:`QuantTensor`
            (group-quantized codes with scales and zeros, entropy-coded; kind ``quant``)
            or array / torch tensor (stored raw: float32 as float16 when lossless, other
            dtypes as they are).
        arch: JSON-able description of the model (opaque here), returned by
            :func:`unpack_state`.
        method: ``"huffman"``, ``"ans"`` or ``"auto"`` (the smaller per tensor).
        index: ``"gap"`` (the paper's relative indices with fillers), ``"gap-raw"``,
            ``"bitmask"`` or ``"auto"`` (the smallest, measured). Quantized tensors also
            try ``"dense"`` (no positions) under ``"auto"``.
        gap_bits: bits per relative index for ``"gap"`` (paper: 5 fc, 8 conv);
            ``None`` searches 2..8.
        version: ``2`` (compressed manifest) or ``1`` (the earlier layout, for
            slimtorch releases that read only version 1).

    Returns:
        The file's bytes.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, got {version!r}")
    coders = ("huffman", "ans") if method == "auto" else (method,)
    schemes = ("gap", "gap-raw", "bitmask") if index == "auto" else (index,)
    if index not in ("auto", "gap", "gap-raw", "bitmask", "dense"):
        raise ValueError(f"index must be auto, gap, gap-raw, bitmask or dense (quantized tensors), got {index!r}")
    bits = tuple(range(2, 9)) if gap_bits is None else (int(gap_bits),)
    if any(not 1 <= b <= 16 for b in bits):
        raise ValueError(f"gap_bits must be in 1..16, got {gap_bits}")
    manifest, tensors = [], {}
    for i, (name, value) in enumerate(state.items()):
        if not isinstance(name, str) or not name:
            raise ValueError(f"state keys must be non-empty strings, got {name!r}")
        if isinstance(value, SharedTensor):
            enc = best_encoding(value, coders, schemes, bits)
            meta, sections, shape = {"kind": "shared", **enc.meta}, enc.sections, value.shape
        elif isinstance(value, QuantTensor):
            qindex = ("dense", "gap-raw", "bitmask") if index == "auto" else (index,)
            qmeta, sections = best_quant_encoding(value, qindex, coders)
            meta, shape = {"kind": "quant", **qmeta}, value.shape
        else:
            arr = _to_numpy(value)
            (meta, sections), shape = _raw_entry(arr), arr.shape
        layout = [[k, v.dtype.name, int(v.size)] for k, v in sections.items()]
        payload = b"".join(np.ascontiguousarray(v).tobytes() for v in sections.values())
        pname = f"p{i}"
        tensors[pname] = np.frombuffer(payload, dtype=np.uint8)
        manifest.append(
            {"name": name, "shape": list(shape), **meta, "layout": layout, "payload": pname, "sha256": _sha(payload)}
        )
    arch = arch if arch is not None else {}
    if version == 2:
        doc = json.dumps({"arch": arch, "tensors": manifest}, sort_keys=True, separators=(",", ":"))
        packed = zlib.compress(doc.encode(), 9)
        tensors[MANIFEST] = np.frombuffer(packed, dtype=np.uint8)
        metadata = {"format": MAGIC, "version": "2", "manifest_sha256": _sha(packed)}
    else:
        arch_json = json.dumps(arch, sort_keys=True)
        manifest_json = json.dumps(
            {"arch_sha256": _sha(arch_json.encode()), "tensors": manifest}, separators=(",", ":")
        )
        metadata = {
            "format": MAGIC,
            "version": "1",
            "manifest": manifest_json,
            "manifest_sha256": _sha(manifest_json.encode()),
            "arch": arch_json,
        }
    from safetensors.numpy import save

    return canonical_safetensors(save(tensors, metadata=metadata))


def canonical_safetensors(data: bytes) -> bytes:
    """Rewrite a safetensors header with sorted keys, so equal content gives equal bytes.

    safetensors serialises ``__metadata__`` from a Rust ``HashMap`` whose iteration order
    changes from call to call: without this, saving the same model twice gives different
    files (breaking reproducible artifacts and checksums). Tensor offsets are relative to
    the end of the header, so only the header and its length change.
    """
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # safetensors keeps the data 8-byte aligned
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def read_header(data: bytes) -> dict:
    if len(data) < 8:
        raise FormatError(f"not a .slim file: {len(data)} bytes is too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8 or n > MAX_HEADER:
        raise FormatError(
            f"not a .slim file (or truncated): declared header of {n} bytes but the file has {len(data)}; "
            ".slim files are safetensors containers (a pickle or zip file is refused)"
        )
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"not a .slim file: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise FormatError("not a .slim file: safetensors header has no metadata")
    return header


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise FormatError(msg)


def _sections(entry: dict, payload: np.ndarray) -> dict[str, np.ndarray]:
    """Slice a payload into its declared sections, after checking the layout adds up."""
    layout = entry.get("layout")
    _check(isinstance(layout, list), "manifest entry has no section layout")
    total, parsed = 0, []
    for item in layout:
        ok = isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
        ok = ok and item[1] in SECTION_DTYPES + RAW_DTYPES and type(item[2]) is int and 0 <= item[2] <= payload.size  # noqa: E721
        _check(ok, f"tensor '{entry.get('name')}': malformed section layout entry {item!r}")
        dt = np.dtype(item[1]).newbyteorder("<")
        parsed.append((item[0], dt, item[2]))
        total += dt.itemsize * item[2]
    _check(
        total == payload.size,
        f"tensor '{entry.get('name')}': sections declare {total} bytes, payload has {payload.size}",
    )
    out, off, buf = {}, 0, payload.tobytes()
    for name, dt, count in parsed:
        out[name] = np.frombuffer(buf, dtype=dt, count=count, offset=off).astype(dt.newbyteorder("="))
        off += dt.itemsize * count
    return out


def _shape(entry: dict, max_elements: int) -> tuple[int, ...]:
    shape = entry.get("shape")
    ok = isinstance(shape, list) and len(shape) <= 32 and all(type(d) is int and 0 <= d < (1 << 62) for d in shape)  # noqa: E721
    _check(ok, f"tensor '{entry.get('name')}': invalid shape {shape!r}")
    numel = math.prod(shape)
    _check(
        numel <= max_elements,
        f"tensor '{entry.get('name')}': declared shape {shape} has {numel} elements, above the limit of "
        f"{max_elements} (pass max_elements to allow it if the file is trusted)",
    )
    return tuple(shape)


def _decode_entry(entry: dict, payload: np.ndarray, max_elements: int) -> SharedTensor | QuantTensor | np.ndarray:
    shape = _shape(entry, max_elements)
    sections = _sections(entry, payload)
    if entry.get("kind") == "raw":
        dtype, stored = entry.get("dtype"), entry.get("stored")
        _check(dtype in RAW_DTYPES and stored in RAW_DTYPES, f"tensor '{entry['name']}': unknown dtype")
        data = sections.get("data")
        _check(
            data is not None and data.dtype.name == stored and data.size == math.prod(shape),
            f"tensor '{entry['name']}': raw data does not match its shape or dtype",
        )
        return data.astype(dtype).reshape(shape)
    _check(
        entry.get("kind") in ("shared", "quant"), f"tensor '{entry.get('name')}': unknown kind {entry.get('kind')!r}"
    )
    try:
        if entry["kind"] == "quant":
            return decode_quant(entry, sections, shape)
        return decode_shared(entry, sections, shape)
    except FormatError as exc:
        raise FormatError(f"tensor '{entry['name']}': {exc}") from None
    except (ValueError, IndexError, OverflowError, MemoryError) as exc:  # defence in depth
        raise FormatError(f"tensor '{entry['name']}': undecodable payload ({exc})") from None


def _verify_metadata(meta: dict, manifest_bytes=None) -> tuple[list[dict], dict]:
    """Magic, version, manifest (and v1 arch) checksums; returns (entries, arch).

    Args:
        manifest_bytes: callable returning the ``manifest`` tensor's bytes (version 2),
            or None when the container has none.
    """
    _check(meta.get("format") == MAGIC, f"not a .slim file: format tag is {meta.get('format')!r}, expected {MAGIC!r}")
    version = meta.get("version")
    _check(
        version in READ_VERSIONS,
        f"unsupported .slim version {version!r}; this slimtorch reads versions {', '.join(READ_VERSIONS)} "
        "(a newer slimtorch wrote it: upgrade slimtorch)",
    )
    if version == "1":
        manifest, arch = _v1_manifest(meta)
    else:
        manifest = _v2_manifest(meta, manifest_bytes() if manifest_bytes is not None else None)
        arch = manifest.get("arch")
    for entry in manifest["tensors"]:
        _check(isinstance(entry, dict) and isinstance(entry.get("name"), str), "malformed manifest entry")
        _check(entry.get("payload") != MANIFEST, f"tensor '{entry['name']}': payload may not be the manifest")
    return manifest["tensors"], arch


def _v1_manifest(meta: dict) -> tuple[dict, Any]:
    manifest_json, arch_json = meta.get("manifest"), meta.get("arch")
    _check(isinstance(manifest_json, str) and isinstance(arch_json, str), "metadata lacks manifest or arch")
    _check(meta.get("manifest_sha256") == _sha(manifest_json.encode()), "manifest checksum mismatch (file corrupted)")
    try:
        manifest, arch = json.loads(manifest_json), json.loads(arch_json)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"manifest or arch is not valid JSON ({exc})") from None
    _check(isinstance(manifest, dict) and isinstance(manifest.get("tensors"), list), "manifest has no tensor list")
    _check(manifest.get("arch_sha256") == _sha(arch_json.encode()), "arch checksum mismatch (file corrupted)")
    return manifest, arch


def _v2_manifest(meta: dict, packed: bytes | None) -> dict:
    _check(packed is not None, "the file has no manifest tensor")
    _check(meta.get("manifest_sha256") == _sha(packed), "manifest checksum mismatch (file corrupted)")
    # bounded: a small compressed manifest must not expand into gigabytes
    inflater = zlib.decompressobj()
    try:
        doc = inflater.decompress(packed, MAX_HEADER)
    except zlib.error as exc:
        raise FormatError(f"manifest is not valid zlib data ({exc})") from None
    _check(
        inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data,
        f"manifest does not inflate to one zlib stream of at most {MAX_HEADER} bytes",
    )
    try:
        manifest = json.loads(doc.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise FormatError(f"manifest is not valid JSON ({exc})") from None
    _check(isinstance(manifest, dict) and isinstance(manifest.get("tensors"), list), "manifest has no tensor list")
    return manifest


def read_manifest(data: bytes) -> tuple[list[dict], dict, dict[str, np.ndarray]]:
    """Verify a ``.slim`` container and return ``(manifest entries, arch, payloads)``.

    Raises:
        FormatError: naming the first check that failed (structure, magic, version,
            checksum).
    """
    meta = read_header(data)["__metadata__"]
    from safetensors.numpy import load

    try:
        payloads = load(bytes(data))
    except Exception as exc:  # safetensors raises its own SafetensorError (and others)
        raise FormatError(f"safetensors container is corrupt: {exc}") from None
    packed = payloads.get(MANIFEST)
    get = None if packed is None else (lambda: packed.tobytes())
    entries, arch = _verify_metadata(meta, get)
    for entry in entries:
        p = payloads.get(entry.get("payload")) if isinstance(entry.get("payload"), str) else None
        _check(p is not None and p.dtype == np.uint8 and p.ndim == 1, f"tensor '{entry['name']}': payload missing")
        _check(_sha(p.tobytes()) == entry.get("sha256"), f"tensor '{entry['name']}': payload checksum mismatch")
    return entries, arch, payloads


class SlimReader:
    """A ``.slim`` file read one tensor at a time (for models too large to decode at once).

    Opening checks the container (header, magic, version, manifest and arch checksums,
    and that the payloads tile the rest of the file exactly, so a truncated file fails
    here); :meth:`read` then reads, checksums and decodes one tensor's payload. Only
    one payload is in memory at a time, so a language model can be filled block by
    block.

    Raises:
        FormatError: naming the check that failed.
    """

    def __init__(self, path: str | os.PathLike, max_elements: int = MAX_ELEMENTS):
        self.path, self.max_elements = Path(path), max_elements
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            head = fh.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            _check(
                len(head) == 8 and n <= min(size - 8, MAX_HEADER),
                f"{self.path}: not a .slim file (or truncated): {size} bytes cannot hold its declared header",
            )
            header = read_header(head + fh.read(n))
        self._base = 8 + n
        self._spans: dict[str, tuple[int, int]] = {}
        end = 0
        for key, info in header.items():
            if key == "__metadata__":
                continue
            ok = isinstance(info, dict) and info.get("dtype") == "U8" and isinstance(info.get("data_offsets"), list)
            a, b = (info.get("data_offsets") + [None, None])[:2] if ok else (None, None)
            ok = ok and type(a) is int and type(b) is int and 0 <= a <= b and info.get("shape") == [b - a]  # noqa: E721
            _check(ok, f"{self.path}: malformed container entry {key!r}")
            self._spans[key] = (a, b)
            end = max(end, b)
        _check(
            self._base + end == size,
            f"{self.path}: payloads end at byte {self._base + end} but the file has {size} bytes (truncated or padded)",
        )
        get = (lambda: self._read_span(MANIFEST)) if MANIFEST in self._spans else None
        self.entries, self.arch = _verify_metadata(header["__metadata__"], get)
        names = [e["name"] for e in self.entries]
        _check(len(set(names)) == len(names), f"{self.path}: a tensor name appears twice in the manifest")
        self._by_name = {e["name"]: e for e in self.entries}

    @property
    def names(self) -> list[str]:
        """Tensor names in file order."""
        return list(self._by_name)

    def entry(self, name: str) -> dict:
        if name not in self._by_name:
            raise FormatError(f"{self.path}: no tensor {name!r} in the file")
        return self._by_name[name]

    def _read_span(self, key: str) -> bytes:
        a, b = self._spans[key]
        with open(self.path, "rb") as fh:
            fh.seek(self._base + a)
            raw = fh.read(b - a)
        _check(len(raw) == b - a, f"{self.path}: container entry {key!r} truncated")
        return raw

    def read(self, name: str) -> SharedTensor | QuantTensor | np.ndarray:
        """Read, verify and decode one tensor."""
        entry = self.entry(name)
        pname = entry.get("payload")
        _check(isinstance(pname, str) and pname in self._spans, f"tensor '{name}': payload missing")
        raw = self._read_span(pname)
        _check(_sha(raw) == entry.get("sha256"), f"tensor '{name}': payload checksum mismatch")
        return _decode_entry(entry, np.frombuffer(raw, dtype=np.uint8), self.max_elements)


def unpack_shared(data: bytes, max_elements: int = MAX_ELEMENTS) -> tuple[dict[str, SharedTensor | np.ndarray], dict]:
    """Like :func:`unpack_state` but keeps shared tensors as :class:`SharedTensor`."""
    entries, arch, payloads = read_manifest(data)
    out: dict[str, SharedTensor | np.ndarray] = {}
    for entry in entries:
        _check(entry["name"] not in out, f"tensor '{entry['name']}' appears twice")
        out[entry["name"]] = _decode_entry(entry, payloads[entry["payload"]], max_elements)
    return out, arch


def unpack_state(data: bytes, max_elements: int = MAX_ELEMENTS) -> tuple[dict[str, np.ndarray], dict]:
    """Decode ``.slim`` bytes to ``(name -> dense array, arch)``; shared tensors come back float32.

    Args:
        data: the file's bytes.
        max_elements: largest tensor (in elements) the file may declare; guards against
            files that would make the reader allocate absurd amounts of memory.

    Raises:
        FormatError: the bytes are not a valid ``.slim`` file; the message names the check.
    """
    state, arch = unpack_shared(data, max_elements)
    return {k: v.to_dense() if isinstance(v, SharedTensor) else v for k, v in state.items()}, arch


def save_slim(path: str | os.PathLike, state: dict, arch: dict | None = None, method: str = "auto", **kw) -> Path:
    """:func:`pack_state` written atomically to ``path``; returns the path."""
    return atomic_write_bytes(path, pack_state(state, arch, method, **kw))


def load_slim(path: str | os.PathLike, max_elements: int = MAX_ELEMENTS) -> tuple[dict[str, np.ndarray], dict]:
    """Read a ``.slim`` file written by :func:`save_slim`; see :func:`unpack_state`."""
    return unpack_state(Path(path).read_bytes(), max_elements)
