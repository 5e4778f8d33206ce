"""One test per crash the fuzzer found: each input now gets a documented, clear error."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

import slimtorch
from slimtorch.core.errors import ConfigError, FormatError
from tests.encode.slim_edit import with_doc, with_manifest
from tests.reliability.fuzz_harness import (
    _st_join,
    _st_split,
    idx_bytes,
    seed_checkpoint,
    seed_model_file,
    seed_slim,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model_file() -> bytes:
    return seed_model_file()


@pytest.fixture(scope="module")
def slim() -> bytes:
    return seed_slim()


def with_meta(data: bytes, key: str, value) -> bytes:
    hdr, body = _st_split(data)
    hdr["__metadata__"][key] = value if isinstance(value, str) else json.dumps(value)
    return _st_join(hdr, body)


def load_bytes(tmp_path, data: bytes, name: str = "m.safetensors"):
    path = tmp_path / name
    path.write_bytes(data)
    return slimtorch.load(path)


# ------------------------------------------------------------------ model files
@pytest.mark.parametrize(
    "arch, match",
    [
        ({"name": "mlp", "kwargs": True}, "corrupt architecture"),  # was TypeError (** of a bool)
        ({"kwargs": {}}, "corrupt architecture"),  # was KeyError 'name'
        ([1, 2], "corrupt architecture"),  # was TypeError (list indices)
        (1.5, "corrupt architecture"),
        ({"name": "mlp", "kwargs": {"hidden": ["x"]}}, "cannot be built"),  # was ValueError from int('x')
        (
            {"name": "mlp", "kwargs": {"hidden": [24], "in_features": 2**59}},
            "declares|cannot be built",
        ),  # was RuntimeError
        ({"name": "mlp", "kwargs": {"hidden": [2**20], "num_classes": 4, "in_features": 32}}, "refusing to allocate"),
        ({"name": "mlp", "kwargs": {"bogus": 1}}, "cannot be built"),
        ({"name": "no_such_model"}, "cannot be built"),
    ],
)
def test_model_file_with_bad_architecture(tmp_path, model_file, arch, match):
    with pytest.raises(FormatError, match=match):
        load_bytes(tmp_path, with_meta(model_file, "arch", arch))


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("sparse", True, "must be JSON objects"),  # was TypeError: argument of type 'bool' is not iterable
        ("sparse", {"fc1.weight": ["a", "b"]}, "invalid shape"),  # was UFuncTypeError
        ("sparse", {"fc1.weight": [[1], 2]}, "invalid shape"),  # was ValueError (inhomogeneous)
        ("sparse", {"fc1.weight": [2**32, 2**32]}, "mask has"),  # int64 overflow of the element count
        ("user", [1], "must be JSON objects"),  # load_quantized then called .get on a list
        ("arch", "[" * 100000 + "]" * 100000, "corrupt metadata"),  # was RecursionError
    ],
)
def test_model_file_with_bad_metadata(tmp_path, model_file, key, value, match):
    with pytest.raises(FormatError, match=match):
        load_bytes(tmp_path, with_meta(model_file, key, value))


def test_model_file_tensor_of_wrong_rank(tmp_path, model_file):
    from safetensors.torch import load, save

    hdr, _ = _st_split(model_file)
    meta = hdr["__metadata__"]
    meta["sparse"] = "{}"
    tensors = {k: v for k, v in load(model_file).items() if not k.endswith("__mask__")}
    tensors["fc1.weight"] = torch.zeros(24 * 32)
    tensors["fc2.weight"] = torch.zeros(7)  # a Linear weight must be 2-D (was IndexError in resize)
    with pytest.raises(FormatError, match="do not fit"):
        load_bytes(tmp_path, save(tensors, metadata=meta))


def test_model_file_whose_header_length_looks_like_pickle_magic(tmp_path, model_file):
    """A valid file with a 0x10280-byte header starts with 80 02, the pickle protocol-2 magic."""
    hdr, body = _st_split(model_file)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    hdr["__metadata__"]["pad"] = "x" * (0x10280 - len(h) - len(',"pad":""'))
    data = _st_join(hdr, body)
    assert data[:2] == b"\x80\x02"
    assert load_bytes(tmp_path, data) is not None  # was refused as "looks like a pickle"


# ------------------------------------------------------------------ .slim
def test_slim_stream_coder_of_wrong_type(slim):
    from slimtorch.encode import unpack_state

    def edit(entries):
        for e in entries:
            if e["kind"] == "shared":
                e["weight_stream"]["coder"] = ["huffman"]  # was TypeError: unhashable type: 'list'

    with pytest.raises(FormatError, match="unknown entropy coder"):
        unpack_state(with_manifest(slim, edit))


def test_slim_payload_name_of_wrong_type(slim):
    from slimtorch.encode import unpack_state

    def edit(entries):
        entries[0]["payload"] = ["p0"]  # was TypeError: unhashable type: 'list'

    with pytest.raises(FormatError, match="payload missing"):
        unpack_state(with_manifest(slim, edit))


@pytest.mark.parametrize("arch", [7, {"model": True}, {"model": {"name": 3}}, {"model": {"kwargs": None}}])
def test_slim_with_bad_arch(slim, arch):
    from slimtorch.encode.model import load_packed

    with pytest.raises(FormatError, match="corrupt architecture"):  # were AttributeError / TypeError / KeyError
        load_packed(with_doc(slim, lambda doc: doc.update(arch=arch)))


# ------------------------------------------------------------------ recipes
@pytest.mark.parametrize(
    "text, match",
    [
        (b"\xff\xfename: x\n", "not UTF-8"),  # was UnicodeDecodeError
        (b"[" * 5000 + b"]" * 5000, "nests lists/mappings"),  # was RecursionError after seconds of parsing
        (b"name: x\nmodel: {name: mlp}\nstages: [{type: [1]}]\n", "unknown stage type"),  # was TypeError: unhashable
        (b"name: x\nmodel: {name: mlp}\nstages: [{type: {a: 1}}]\n", "unknown stage type"),
        (b"\t\x00", "not valid YAML"),
    ],
)
def test_recipe_bad_files(tmp_path, text, match):
    from slimtorch.pipeline.recipe import load_recipe

    path = tmp_path / "r.yaml"
    path.write_bytes(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_recipe(path)
    assert info.value.field


def test_recipe_billion_laughs_is_refused_quickly(tmp_path):
    from slimtorch.pipeline.recipe import load_recipe

    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    text = "\n".join(levels) + "\nname: x\nmodel: {name: mlp}\nstages: [{type: train, epochs: *i}]\n"
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="more than"):  # 9^9 values: validation would walk them all
        load_recipe(path)


# ------------------------------------------------------------------ checkpoints
def _rezip(data: bytes, edit) -> bytes:
    zin = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            edit(zout, info, zin.read(info.filename))
    return out.getvalue()


@pytest.mark.parametrize("kind", ["legacy", "deflated", "bad-pickle", "truncated", "garbage"])
def test_checkpoint_bad_files(tmp_path, kind):
    from slimtorch.train.checkpoint import load_checkpoint

    good = seed_checkpoint()
    if kind == "legacy":  # pre-1.6 format declares storage sizes it allocates before reading
        buf = io.BytesIO()
        torch.save({"kind": "slimtorch.checkpoint.v1"}, buf, _use_new_zipfile_serialization=False)
        data = buf.getvalue()
    elif kind == "deflated":  # torch's reader would inflate it: a zip bomb in a few KB
        data = _rezip(good, lambda z, i, b: z.writestr(i.filename, b, compress_type=zipfile.ZIP_DEFLATED))
    elif kind == "bad-pickle":  # was AssertionError / IndexError / OSError from inside torch.load
        data = _rezip(
            good,
            lambda z, i, b: z.writestr(
                i.filename, b[:-9] + b"J\x01\x00\x00\x00." if i.filename.endswith(".pkl") else b
            ),
        )
    elif kind == "truncated":
        data = good[: len(good) // 2]
    else:
        data = b"\x00" * 100
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(data)
    with pytest.raises(FormatError, match="checkpoint"):
        load_checkpoint(path)


def test_checkpoint_round_trip_still_works(tmp_path):
    from slimtorch.train.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(seed_checkpoint())
    assert load_checkpoint(path)["epoch"] == 1


# ------------------------------------------------------------------ datasets
def test_idx_corrupt_gzip_stream(tmp_path):
    from slimtorch.data.idx import read_idx

    gz = bytearray(gzip.compress(idx_bytes(np.arange(64, dtype=np.uint8).reshape(4, 4, 4)), mtime=0))
    gz[12] ^= 0xFF  # corrupt the deflate data: was zlib.error
    path = tmp_path / "x-idx3-ubyte.gz"
    path.write_bytes(bytes(gz))
    with pytest.raises(FormatError, match="cannot read|declares"):
        read_idx(path)


def test_idx_path_is_a_directory(tmp_path):
    from slimtorch.data.idx import read_idx

    with pytest.raises(FormatError, match="cannot read"):  # was IsADirectoryError
        read_idx(tmp_path)


@pytest.mark.parametrize(
    "payload, match",
    [
        (pickle.dumps({b"\xff\xfe": 1}, protocol=2), "'data' must be"),  # was UnicodeDecodeError on the key
        (
            pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10**30]}, protocol=2),
            "labels",
        ),  # OverflowError
        (b"\x80\x05\x8e" + (2**62).to_bytes(8, "little") + b"x", "refused to unpickle"),  # was MemoryError
        (
            b"\x80\x05\x95" + (2**63 + 5).to_bytes(8, "little") + b"x",
            "refused to unpickle",
        ),  # was OverflowError (FRAME)
    ],
)
def test_cifar_python_bad_pickles(tmp_path, payload, match):
    from slimtorch.data.cifar import read_cifar_python

    path = tmp_path / "data_batch_1"
    path.write_bytes(payload)
    with pytest.raises(FormatError, match=match):
        read_cifar_python(path)


def test_quantized_file_with_vector_activation_scale_is_refused(tmp_path):
    """Fuzzing found a file whose per-tensor activation scale was a list: FormatError, not RuntimeError."""
    import torch
    from torch import nn

    from slimtorch.core.errors import FormatError
    from slimtorch.quantize.model import attach_activation_quant

    model = nn.Sequential(nn.Linear(4, 2))
    params = {"0": {"act_bits": 8, "act_symmetric": False, "act_scale": [0.1, 0.2], "act_zero_point": 3}}
    with pytest.raises(FormatError, match="one positive finite number"):
        attach_activation_quant(model, params)
    ok = {"0": {"act_bits": 8, "act_symmetric": False, "act_scale": [0.1], "act_zero_point": 3}}
    attach_activation_quant(nn.Sequential(nn.Linear(4, 2)), ok)(torch.randn(1, 4))


def test_checkpoint_with_unsupported_zip_version_is_refused(tmp_path):
    """Fuzzing found a zip whose 'version needed' field made zipfile raise NotImplementedError."""
    import io
    import zipfile

    from slimtorch.core.errors import FormatError
    from slimtorch.train.checkpoint import load_checkpoint

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", b"x" * 10)
    data = bytearray(buf.getvalue())
    cd = data.rfind(b"PK\x01\x02")  # central directory entry: bytes 6-7 = version needed to extract
    data[cd + 6 : cd + 8] = (194).to_bytes(2, "little")
    local = data.find(b"PK\x03\x04")
    data[local + 4 : local + 6] = (194).to_bytes(2, "little")
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(bytes(data))
    with pytest.raises(FormatError):
        load_checkpoint(p)


def test_cifar_pickle_with_huge_memo_index_is_refused_without_allocating(tmp_path):
    """Fuzzing found LONG_BINPUT 680825748, which made CPython's unpickler allocate ~10 GB."""
    import resource
    import struct

    from slimtorch.core.errors import FormatError
    from slimtorch.data.cifar import read_cifar_python

    data = b"\x80\x02}" + b"r" + struct.pack("<I", 680825748) + b"."  # EMPTY_DICT, LONG_BINPUT, STOP
    p = tmp_path / "data_batch_1"
    p.write_bytes(data)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(FormatError, match="memo index"):
        read_cifar_python(p)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: no multi-GB memo
