"""Fuzzing harness shared by the CI tests (``tests/reliability``) and ``bench/fuzz.py``.

Every reader of a user-supplied file gets seed files written by the library itself
(a ``.slim`` of a pruned + k-means model, a model file, a quantized model file, a
recipe, a training checkpoint, IDX and CIFAR batches), then mutated inputs:
truncation, bit flips, byte overwrites, splices (also across formats), header
rewrites, format-aware edits (JSON metadata values replaced by wrong types or huge
numbers, with the ``.slim`` checksums re-signed so the decoders themselves are
reached; YAML values replaced; the pickle inside a checkpoint zip mutated) and
random bytes. A reader may only fail with a documented error
(:data:`DOCUMENTED`); anything else is a crash.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import random
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from slimtorch.core.errors import (
    ConfigError,
    DataNotFoundError,
    FormatError,
    UnsupportedModelError,
)

DOCUMENTED = (FormatError, ConfigError, DataNotFoundError, FileNotFoundError, UnsupportedModelError)


# --------------------------------------------------------------------------- seed files
def tiny_model(seed: int = 0):
    from slimtorch.models import create_model

    torch.manual_seed(seed)
    return create_model("mlp", hidden=[24], num_classes=4, in_features=32)


def seed_slim() -> bytes:
    from slimtorch.encode.model import pack_model
    from slimtorch.prune import PruneConfig, prune
    from slimtorch.quantize.config import KMeansConfig
    from slimtorch.quantize.kmeans import kmeans_share

    model = prune(tiny_model(), PruneConfig(sparsity=0.8))
    model = kmeans_share(model, KMeansConfig(bits=4))
    return pack_model(model)


def seed_slim_variants() -> list[bytes]:
    """The same model coded every way (Huffman / ANS, each index scheme), so each decoder is reached."""
    from slimtorch.encode.model import pack_model
    from slimtorch.prune import PruneConfig, prune
    from slimtorch.quantize.config import KMeansConfig
    from slimtorch.quantize.kmeans import kmeans_share

    model = kmeans_share(prune(tiny_model(), PruneConfig(sparsity=0.8)), KMeansConfig(bits=4))
    return [pack_model(model, method=m, index=i) for m in ("huffman", "ans") for i in ("gap", "gap-raw", "bitmask")]


def seed_model_file() -> bytes:
    from slimtorch.io.model_file import model_to_bytes
    from slimtorch.prune import PruneConfig, prune

    return model_to_bytes(prune(tiny_model(), PruneConfig(sparsity=0.8)), metadata={"accuracy": 0.5})


def seed_quantized() -> bytes:
    from slimtorch.quantize.config import QuantConfig
    from slimtorch.quantize.model import quantize_model, save_quantized

    model = tiny_model()
    q = quantize_model(model, QuantConfig(act_bits=8), [torch.randn(8, 32) for _ in range(2)])
    with tempfile.TemporaryDirectory() as d:
        return Path(save_quantized(q, Path(d) / "q.safetensors")).read_bytes()


RECIPE = """\
name: fuzz
seed: 0
model: {name: mlp, kwargs: {hidden: [16]}}
data: {name: synthetic, kwargs: {n_train: 128, n_test: 64}}
measure: {latency_batches: [], latency_runs: 1}
stages:
  - type: train
    epochs: 1
    batch_size: 32
    optimizer: {name: sgd, lr: 0.1, momentum: 0.9}
  - type: prune
    prune: {method: magnitude, sparsity: 0.8}
    schedule: one_shot
  - type: kmeans
    bits: 4
  - type: encode
    method: auto
  - type: save
    filename: model.safetensors
"""


def seed_recipe() -> bytes:
    return RECIPE.encode()


def seed_checkpoint() -> bytes:
    from slimtorch.train.checkpoint import save_checkpoint

    model = tiny_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 32)).sum().backward()
    opt.step()
    with tempfile.TemporaryDirectory() as d:
        p = save_checkpoint(Path(d) / "c.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 1})
        return Path(p).read_bytes()


def idx_bytes(arr: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    code = codes[arr.dtype.type]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def seed_idx() -> list[bytes]:
    rng = np.random.default_rng(0)
    images = idx_bytes(rng.integers(0, 256, (6, 4, 4), dtype=np.uint8))
    labels = idx_bytes(rng.integers(0, 10, 6, dtype=np.uint8))
    floats = idx_bytes(rng.normal(size=(3, 5)).astype(np.float32))
    return [images, labels, floats, gzip.compress(images, mtime=0)]


def seed_cifar_binary() -> bytes:
    rng = np.random.default_rng(0)
    recs = [bytes([int(rng.integers(0, 10))]) + rng.integers(0, 256, 3072, dtype=np.uint8).tobytes() for _ in range(2)]
    return b"".join(recs)


def seed_cifar_python() -> list[bytes]:
    rng = np.random.default_rng(0)
    batch = {b"batch_label": b"fuzz", b"labels": [1, 2], b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
    return [pickle.dumps(batch, protocol=p) for p in (2, 4, 5)]


# --------------------------------------------------------------------------- mutators
HUGE = [2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -1, -(2**63), 0, 1e308, -1e308]
WRONG = [None, True, False, "", "x" * 40, [], {}, [[]], [1, 2], {"a": 1}, 1.5, float("nan"), "nan", "inf", -0.0]


def wrong_value(rng: random.Random):
    """A value of a wrong type or an absurd size (for JSON / YAML edits)."""
    pool = HUGE + WRONG
    v = rng.choice(pool)
    if rng.random() < 0.1:
        v = [v] * rng.randint(1, 40)  # long list / deep shapes
    return v


def truncate(rng: random.Random, d: bytes) -> bytes:
    return d[: rng.randrange(len(d) + 1)] if d else d


def bitflip(rng: random.Random, d: bytes) -> bytes:
    if not d:
        return d
    b = bytearray(d)
    for _ in range(rng.choice([1, 1, 2, 4, 16])):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def overwrite(rng: random.Random, d: bytes) -> bytes:
    if not d:
        return d
    b = bytearray(d)
    i = rng.randrange(len(b))
    n = rng.choice([1, 2, 4, 8])
    b[i : i + n] = rng.choice([b"\x00", b"\xff", b"\x7f", b"\x80"]) * n if rng.random() < 0.5 else rng.randbytes(n)
    return bytes(b[: len(d)])


def header(rng: random.Random, d: bytes) -> bytes:
    """Overwrite bytes in the first 16 (length fields, magic numbers, dimensions)."""
    b = bytearray(d.ljust(16, b"\x00"))
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(16)
        b[i] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    return bytes(b[: max(len(d), 1)])


def insert(rng: random.Random, d: bytes) -> bytes:
    i = rng.randrange(len(d) + 1)
    return d[:i] + rng.randbytes(rng.choice([1, 4, 64])) + d[i:]


def delete(rng: random.Random, d: bytes) -> bytes:
    if not d:
        return d
    i = rng.randrange(len(d))
    return d[:i] + d[i + rng.choice([1, 4, 64]) :]


def random_bytes(rng: random.Random, d: bytes) -> bytes:
    return rng.randbytes(rng.choice([0, 1, 7, 8, 16, 100, 1000]))


GENERIC = [truncate, bitflip, bitflip, overwrite, header, insert, delete, random_bytes]


def splice(rng: random.Random, d: bytes, other: bytes) -> bytes:
    i, j = rng.randrange(len(d) + 1), rng.randrange(len(other) + 1)
    return d[:i] + other[j:] if rng.random() < 0.5 else other[:j] + d[i:]


# ----- format-aware mutators
def _paths(obj, prefix=()):
    """Every (path) into a JSON-like object."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:16]):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    if not path:
        return value
    node = obj
    for p in path[:-1]:
        node = node[p]
    if isinstance(node, dict) and random.random() < 0.1:
        node.pop(path[-1], None)  # sometimes delete the key instead
    else:
        node[path[-1]] = value
    return obj


def mutate_json(rng: random.Random, obj):
    """Replace one value anywhere in ``obj`` by a wrong-typed or huge value (or perturb an int)."""
    paths = list(_paths(obj))
    path = rng.choice(paths)
    node = obj
    for p in path:
        node = node[p]
    if type(node) is int and rng.random() < 0.5:
        value = node + rng.choice([-1, 1, -node - 1, 2 ** rng.randint(8, 70)])
    elif isinstance(node, str) and rng.random() < 0.3:
        value = rng.choice(["float64", "uint64", "bool", "int8", "huffman", "ans", "gap", "bitmask", "raw", "shared"])
    else:
        value = wrong_value(rng)
    return _set(obj, path, value)


def _st_split(d: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(d[:8], "little")
    return json.loads(d[8 : 8 + n]), d[8 + n :]


def _st_join(header_obj: dict, body: bytes) -> bytes:
    h = json.dumps(header_obj, separators=(",", ":"), allow_nan=True).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + body


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _resign_slim(meta: dict, hdr: dict | None = None, body: bytes = b"") -> None:
    """Recompute a .slim file's manifest checksums after an edit (version 1: JSON strings; 2: manifest tensor)."""
    try:
        manifest = json.loads(meta["manifest"])
        manifest["arch_sha256"] = _sha(meta["arch"].encode())
        meta["manifest"] = json.dumps(manifest, separators=(",", ":"))
    except Exception:
        pass
    if isinstance(meta.get("manifest"), str):
        meta["manifest_sha256"] = _sha(meta["manifest"].encode())
    elif hdr is not None and isinstance(hdr.get("manifest"), dict):
        try:
            lo, hi = hdr["manifest"]["data_offsets"]
            meta["manifest_sha256"] = _sha(body[lo:hi])
        except Exception:
            pass


def safetensors_meta(rng: random.Random, d: bytes, resign: bool = False) -> bytes:
    """Edit the safetensors header: a metadata JSON value (nested JSON strings included) or a tensor entry."""
    hdr, body = _st_split(d)
    meta = hdr.setdefault("__metadata__", {})
    keys = [k for k in hdr if k != "__metadata__"]
    if keys and rng.random() < 0.2:  # a tensor entry: dtype / shape / offsets
        _set(hdr, (rng.choice(keys),), hdr[rng.choice(keys)]) if rng.random() < 0.2 else mutate_json(
            rng, hdr[rng.choice(keys)]
        )
    else:
        k = rng.choice(list(meta) or ["x"])
        try:
            inner = json.loads(meta.get(k, "null"))
            meta[k] = json.dumps(mutate_json(rng, inner), allow_nan=True)
        except (json.JSONDecodeError, TypeError):
            meta[k] = rng.choice(["", "1", "2", "null", "[]", "{}", "slimtorch.slim", "slimtorch.model"])
    if resign:
        _resign_slim(meta, hdr, body)
    return _st_join(hdr, body)


def slim_payload(rng: random.Random, d: bytes) -> bytes:
    """Mutate one tensor payload of a ``.slim`` file and re-sign it: only the decoders can object."""
    from safetensors.numpy import load

    from tests.encode.slim_edit import manifest_doc, resigned

    try:
        tensors, doc = dict(load(d)), manifest_doc(d)
    except Exception:
        return d
    entries = [e for e in doc["tensors"] if e.get("payload") in tensors]
    if not entries:
        return d
    e = rng.choice(entries)
    chunk = rng.choice([bitflip, overwrite, overwrite])(rng, tensors[e["payload"]].tobytes())
    tensors[e["payload"]] = np.frombuffer(chunk, dtype=np.uint8)
    e["sha256"] = _sha(chunk)
    return resigned(d, doc, tensors)


def slim_manifest(rng: random.Random, d: bytes) -> bytes:
    """Edit one manifest field (counts, sizes, layout, shapes, coders, arch) and re-sign."""
    from tests.encode.slim_edit import manifest_doc, resigned

    try:
        doc = manifest_doc(d)
    except Exception:
        return d
    return resigned(d, mutate_json(rng, doc))


def yaml_value(rng: random.Random, d: bytes) -> bytes:
    import yaml

    try:
        obj = yaml.safe_load(d.decode())
    except Exception:
        return d
    if not isinstance(obj, dict | list):
        return d
    obj = mutate_json(rng, obj)
    return yaml.safe_dump(obj, allow_unicode=True).encode()


YAML_NASTIES = [
    b"!!python/object/apply:os.system ['true']\n",
    b"name: !!python/object/apply:os.system ['true']\nmodel: {name: mlp}\n",
    b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    b"f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    b"name: *g\nmodel: {name: *g}\nstages: [{type: train, epochs: *g}]\n",
    b"[" * 5000 + b"]" * 5000,
    b"{" * 5000,
    b"\xff\xfe\x00garbage",
    b"name: x\nmodel: {name: mlp}\nstages: [{type: [1]}]\n",
    b"name: x\nmodel: {name: mlp}\nstages: [{type: {a: 1}}]\n",
    b"name: x\nmodel: {name: mlp}\nstages: [[1]]\n",
    b"name: x\nmodel: {name: mlp}\nseed: 1e999\n",
    b"- 1\n- 2\n",
    b"12\n",
    b"\t\x00",
]


def zip_pickle(rng: random.Random, d: bytes) -> bytes:
    """Mutate the pickle (``data.pkl``) inside a torch checkpoint zip and re-zip it."""
    try:
        zin = zipfile.ZipFile(io.BytesIO(d))
        items = [(i, zin.read(i.filename)) for i in zin.infolist()]
    except Exception:
        return d
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info, data in items:
            if info.filename.endswith(".pkl") or (rng.random() < 0.1):
                data = rng.choice([bitflip, overwrite, truncate, insert, delete])(rng, data)
            zout.writestr(info.filename, data)
    return out.getvalue()


def idx_header(rng: random.Random, d: bytes) -> bytes:
    """Rewrite the IDX header: dtype code, ndim, a dimension (often huge)."""
    gz = d[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(d) if gz else d)
    if len(raw) < 4:
        return d
    choice = rng.randrange(3)
    if choice == 0:
        raw[2] = rng.choice([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0xFF])
    elif choice == 1:
        raw[3] = rng.choice([0, 1, 2, 3, 4, 255])
    else:
        nd = raw[3]
        if nd:
            i = 4 + 4 * rng.randrange(nd)
            raw[i : i + 4] = rng.choice([0, 1, 2**31, 2**32 - 1, rng.randrange(2**32)]).to_bytes(4, "big")
    raw = bytes(raw)
    return gzip.compress(raw, mtime=0) if gz else raw


def regzip(rng: random.Random, d: bytes) -> bytes:
    """Gzip a (generically) mutated IDX payload, so the parser behind gzip is reached."""
    raw = gzip.decompress(d) if d[:2] == b"\x1f\x8b" else d
    return gzip.compress(rng.choice(GENERIC)(rng, raw), mtime=0)


PICKLE_NASTIES = [
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10**30]}, protocol=2),
    pickle.dumps({b"\xff\xfe": 1}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [[1, 2]]}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": {1: 2}}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": ["a"]}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [1.5]}, protocol=2),
    pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [float("nan")]}, protocol=2),
    pickle.dumps([1, 2, 3], protocol=2),
    b"\x80\x05\x8e" + (2**62).to_bytes(8, "little") + b"x",  # BYTEARRAY8 with a huge length
    b"\x80\x04\x8e" + (2**62).to_bytes(8, "little") + b"x",  # BINBYTES8 with a huge length
    b"\x80\x02" + b"(" * 100000 + b".",
    b"\x80\x02]" + b"q\x00h\x00a" * 10 + b".",
]


# --------------------------------------------------------------------------- targets
@dataclass
class Target:
    """One reader: how to call it on bytes, its seeds and its format-aware mutators."""

    name: str
    call: Callable[[bytes, Path], object]
    seeds: list[bytes]
    aware: list[Callable] = field(default_factory=list)
    nasties: list[bytes] = field(default_factory=list)


def _write(data: bytes, path: Path) -> Path:
    path.write_bytes(data)
    return path


def _load_slim(data: bytes, tmp: Path):
    from slimtorch.encode import load_slim

    return load_slim(_write(data, tmp / "m.slim"))


def _unpack_state(data: bytes, tmp: Path):
    from slimtorch.encode import unpack_state

    return unpack_state(data)


def _load_packed(data: bytes, tmp: Path):
    from slimtorch.encode.model import load_packed

    return load_packed(data)


def _st_load(data: bytes, tmp: Path):
    import slimtorch

    return slimtorch.load(_write(data, tmp / "m.bin"))


def _read_manifest(data: bytes, tmp: Path):
    from slimtorch.encode.format import read_manifest

    return read_manifest(data)


def _read_model_file(data: bytes, tmp: Path):
    from slimtorch.io.model_file import read_model_file

    return read_model_file(data)


def _load_model(data: bytes, tmp: Path):
    from slimtorch.io.model_file import load_model

    return load_model(_write(data, tmp / "m.safetensors"))


def _load_quantized(data: bytes, tmp: Path):
    from slimtorch.quantize.model import load_quantized

    return load_quantized(_write(data, tmp / "q.safetensors"))


def _load_recipe(data: bytes, tmp: Path):
    from slimtorch.pipeline.recipe import load_recipe

    return load_recipe(_write(data, tmp / "r.yaml"))


def _load_checkpoint(data: bytes, tmp: Path):
    from slimtorch.train.checkpoint import load_checkpoint

    return load_checkpoint(_write(data, tmp / "checkpoint.pt"))


def _read_idx(data: bytes, tmp: Path):
    from slimtorch.data.idx import read_idx

    return read_idx(_write(data, tmp / "x-idx3-ubyte"))


def _read_cifar_binary(data: bytes, tmp: Path):
    from slimtorch.data.cifar import read_cifar_binary

    return read_cifar_binary(_write(data, tmp / "data_batch_1.bin"))


def _read_cifar_python(data: bytes, tmp: Path):
    from slimtorch.data.cifar import read_cifar_python

    return read_cifar_python(_write(data, tmp / "data_batch_1"))


def _chain(*fns):
    """Call several entry points of one format on the same input (each must be safe)."""

    def call(data: bytes, tmp: Path):
        first = None
        for fn in fns:
            try:
                fn(data, tmp)
            except DOCUMENTED as exc:
                first = first or exc
        if first is not None:
            raise first

    return call


def targets() -> dict[str, Target]:
    """Every reader of user files, with seeds written by the library."""
    slims = seed_slim_variants()
    model_file, quantized = seed_model_file(), seed_quantized()
    st_meta = lambda rng, d: safetensors_meta(rng, d)  # noqa: E731
    st_meta_signed = lambda rng, d: safetensors_meta(rng, d, resign=True)  # noqa: E731
    return {
        "slim": Target(
            "slim",
            _unpack_state,
            slims,
            [slim_payload, slim_payload, slim_manifest, slim_manifest, st_meta_signed, st_meta],
        ),
        "slim_load": Target(
            "slim_load",
            _chain(_load_packed, _load_slim, _st_load),
            [seed_slim()],
            [slim_payload, slim_manifest, st_meta_signed],
        ),
        "model_file": Target(
            "model_file", _chain(_read_model_file, _load_model, _st_load), [model_file], [st_meta, st_meta, st_meta]
        ),
        "quantized": Target("quantized", _load_quantized, [quantized], [st_meta, st_meta, st_meta]),
        "recipe": Target("recipe", _load_recipe, [seed_recipe()], [yaml_value, yaml_value, yaml_value], YAML_NASTIES),
        "checkpoint": Target("checkpoint", _load_checkpoint, [seed_checkpoint()], [zip_pickle, zip_pickle]),
        "idx": Target("idx", _read_idx, seed_idx(), [idx_header, idx_header, regzip]),
        "cifar_binary": Target("cifar_binary", _read_cifar_binary, [seed_cifar_binary()]),
        "cifar_python": Target("cifar_python", _read_cifar_python, seed_cifar_python(), [], PICKLE_NASTIES),
    }


def make_input(rng: random.Random, target: Target, others: list[bytes]) -> bytes:
    """One mutated input: a seed, then 1-3 mutations (format-aware ones half the time)."""
    if target.nasties and rng.random() < 0.02:
        return rng.choice(target.nasties)
    d = rng.choice(target.seeds)
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        r = rng.random()
        try:
            if target.aware and r < 0.5:
                d = rng.choice(target.aware)(rng, d)
            elif r < 0.55 and others:
                d = splice(rng, d, rng.choice(others))
            else:
                d = rng.choice(GENERIC)(rng, d)
        except Exception:  # a format-aware mutator met an already broken file: keep the input as is
            pass
    return d


@dataclass
class Outcome:
    inputs: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    crashes: list[dict] = field(default_factory=list)
    slowest_s: float = 0.0
    slow: list[dict] = field(default_factory=list)


def _where(exc: BaseException) -> str:
    """Innermost slimtorch frame of a traceback (where the crash escaped from our code)."""
    import traceback

    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "slimtorch" in f.filename]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in frames[::-1][:3])


def run_one(target: Target, data: bytes, tmp: Path, out: Outcome, slow_s: float = 1.0) -> None:
    """Feed one input to ``target``; record success, a documented error, a crash or a hang."""
    t0 = time.perf_counter()
    try:
        target.call(data, tmp)
        out.ok += 1
    except DOCUMENTED as exc:
        name = type(exc).__name__
        out.errors[name] = out.errors.get(name, 0) + 1
    except BaseException as exc:  # noqa: BLE001 - every other exception is the finding
        if isinstance(exc, KeyboardInterrupt):
            raise
        if len(out.crashes) < 50:
            out.crashes.append(
                {
                    "error": f"{type(exc).__name__}: {str(exc)[:300]}",
                    "where": _where(exc),
                    "input_hex": data[:4096].hex(),
                    "len": len(data),
                }
            )
        name = "CRASH " + type(exc).__name__
        out.errors[name] = out.errors.get(name, 0) + 1
    dt = time.perf_counter() - t0
    out.inputs += 1
    out.slowest_s = max(out.slowest_s, dt)
    if dt > slow_s and len(out.slow) < 20:
        out.slow.append({"seconds": round(dt, 3), "input_hex": data[:4096].hex(), "len": len(data)})


def fuzz(
    target: Target,
    n: int,
    seed: int = 0,
    others: list[bytes] | None = None,
    tmp: Path | None = None,
    budget_s: float | None = None,
) -> Outcome:
    """Run ``n`` mutated inputs (or until ``budget_s`` seconds pass) through ``target``."""
    rng = random.Random(seed)
    out = Outcome()
    own_tmp = tmp is None
    tmpdir = tempfile.TemporaryDirectory() if own_tmp else None
    tmp = Path(tmpdir.name) if own_tmp else tmp
    t0 = time.perf_counter()
    try:
        for seed_file in target.seeds + target.nasties:
            run_one(target, seed_file, tmp, out)
        while out.inputs < n:
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                break
            run_one(target, make_input(rng, target, others or []), tmp, out)
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    return out


if __name__ == "__main__":  # quick manual run: python tests/reliability/fuzz_harness.py [n]
    import sys

    torch.set_num_threads(1)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    only = sys.argv[2:] or None
    ts = targets()
    pool = [s for t in ts.values() for s in t.seeds]
    for name, t in ts.items():
        if only and name not in only:
            continue
        o = fuzz(t, n, others=pool)
        print(name, o.inputs, o.ok, o.errors, f"slowest={o.slowest_s:.3f}s")
        for c in o.crashes[:8]:
            print("   ", c["error"][:150], "@", c["where"])
        os.sys.stdout.flush()
