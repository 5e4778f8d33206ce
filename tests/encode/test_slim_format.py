"""The .slim container: round trips, and refusal of every kind of broken file."""

import hashlib
import pickle
import time
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load, save

from slimtorch.core.errors import FormatError
from slimtorch.encode import SharedTensor, load_slim, pack_state, save_slim, unpack_state
from slimtorch.encode.format import read_header, unpack_shared
from tests.encode.encode_strategies import make_shared, shared_tensors
from tests.encode.slim_edit import manifest_doc, rewrite, with_manifest

ARCH = {"model": "lenet300", "layers": [784, 300, 100, 10]}


def small_state():
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": make_shared(1, (30, 78), 32, 0.08),
        "fc1.bias": rng.normal(size=30).astype(np.float32),
        "fc2.weight": make_shared(2, (10, 30), 4, 0.3),
        "bn.num_batches_tracked": np.array(12, dtype=np.int64),
        "half.exact": np.array([0.5, -2.0, 1024.0], dtype=np.float32),
    }


@pytest.fixture(scope="module")
def packed() -> bytes:
    return pack_state(small_state(), ARCH)


@pytest.mark.parametrize("method", ["auto", "huffman", "ans"])
def test_round_trip_is_bit_exact(method):
    state = small_state()
    out, arch = unpack_state(pack_state(state, ARCH, method))
    assert arch == ARCH and list(out) == list(state)
    for name, value in state.items():
        expect = value.to_dense() if isinstance(value, SharedTensor) else value
        assert out[name].dtype == expect.dtype and out[name].shape == expect.shape
        assert out[name].tobytes() == expect.tobytes(), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(shared_tensors(), min_size=1, max_size=3), st.sampled_from(["auto", "huffman", "ans"]))
def test_round_trip_property(tensors, method):
    state = {f"t{i}": t for i, t in enumerate(tensors)}
    back, _ = unpack_shared(pack_state(state, {}, method))
    assert all(back[k] == v for k, v in state.items())


def test_float16_only_when_lossless(packed):
    manifest = manifest_doc(packed)["tensors"]
    stored = {e["name"]: e.get("stored") for e in manifest}
    assert stored["half.exact"] == "float16" and stored["fc1.bias"] == "float32"


def test_torch_tensors_and_file_round_trip(tmp_path):
    state = {"w": SharedTensor.from_dense(torch.tensor([[0.0, 1.5], [1.5, 0.0]])), "b": torch.ones(2)}
    path = save_slim(tmp_path / "m.slim", state, ARCH)
    out, arch = load_slim(path)
    assert arch == ARCH and np.array_equal(out["w"], [[0, 1.5], [1.5, 0]]) and out["b"].dtype == np.float32


def test_manifest_records_scheme_bits_and_codebook(packed):
    entry = manifest_doc(packed)["tensors"][0]
    assert entry["kind"] == "shared" and entry["codebook_size"] == 32
    assert entry["index"] in ("gap", "gap-raw", "bitmask") and entry["weight_stream"]["coder"] in ("huffman", "ans")
    assert entry["payload"] == "p0" and len(entry["sha256"]) == 64


def test_every_truncation_is_rejected(packed):
    step = max(1, len(packed) // 300)
    for cut in list(range(0, len(packed), step)) + [len(packed) - 1]:
        with pytest.raises(FormatError):
            unpack_state(packed[:cut])


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_bit_flip_is_rejected(packed, data):
    pos = data.draw(st.integers(0, len(packed) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = bytearray(packed)
    bad[pos] ^= 1 << bit
    with pytest.raises(FormatError):
        unpack_state(bytes(bad))


def test_wrong_version_and_magic_name_the_check(packed):
    with pytest.raises(FormatError, match="version"):
        unpack_state(rewrite(packed, lambda m: m.update(version="3")))
    with pytest.raises(FormatError, match="format tag"):
        unpack_state(rewrite(packed, lambda m: m.update(format="something.else")))
    with pytest.raises(FormatError, match="metadata"):
        unpack_state(save({"x": np.zeros(3, np.uint8)}))


def test_payload_checksum_is_checked(packed):
    tensors = load(packed)
    tensors["p0"] = tensors["p0"].copy()
    tensors["p0"][-1] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        unpack_state(save(tensors, metadata=read_header(packed)["__metadata__"]))


@pytest.mark.parametrize(
    "shape", [[2**40, 2**40], [10**9], [-1, 3], [1.5], "big", [2] * 40, [2**31, 2**31, 2**31, 2**31]]
)
def test_absurd_declared_shapes_are_rejected_quickly(packed, shape):
    bad = with_manifest(packed, lambda entries: entries[0].update(shape=shape))
    start = time.perf_counter()
    with pytest.raises(FormatError, match="shape|elements"):
        unpack_state(bad)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(
    "field,value",
    [
        ("nnz", 10**9),
        ("codebook_size", 7),
        ("index", "zigzag"),
        ("bits", 60),
        ("layout", [["codebook", "float32", 10**12]]),
    ],
)
def test_inconsistent_signed_manifest_is_rejected(packed, field, value):
    with pytest.raises(FormatError):
        unpack_state(with_manifest(packed, lambda entries: entries[0].update({field: value})))


def test_absurd_stream_count_is_rejected(packed):
    def edit(entries):
        entries[0]["weight_stream"]["n"] = 10**15

    with pytest.raises(FormatError, match="weight|stream|'n'"):
        unpack_state(with_manifest(packed, edit))


def test_pickle_file_is_refused(tmp_path):
    path = tmp_path / "model.slim"
    path.write_bytes(pickle.dumps({"w": np.ones(3)}))
    with pytest.raises(FormatError, match="not a .slim file"):
        load_slim(path)
    torch.save({"w": torch.ones(3)}, tmp_path / "t.pt")
    with pytest.raises(FormatError):
        load_slim(tmp_path / "t.pt")


def test_version_1_files_are_still_read(packed):
    old = pack_state(small_state(), ARCH, version=1)
    assert json_meta_version(old) == "1" and json_meta_version(packed) == "2"
    a, arch_a = unpack_state(old)
    b, arch_b = unpack_state(packed)
    assert arch_a == arch_b == ARCH and all(np.array_equal(a[k], b[k]) for k in a)
    # the compressed manifest is what makes version 2 smaller (same payload bytes)
    assert len(packed) < len(old)


def json_meta_version(data: bytes) -> str:
    return read_header(data)["__metadata__"]["version"]


def test_v2_manifest_tensor_problems_are_named(packed):
    tensors = load(packed)
    del tensors["manifest"]
    with pytest.raises(FormatError, match="no manifest tensor"):
        unpack_state(save(tensors, metadata=read_header(packed)["__metadata__"]))
    for blob, match in [
        (b"not zlib at all", "not valid zlib"),
        (zlib.compress(b"[1, 2]"), "no tensor list"),
        (zlib.compress(b"{" * 10), "not valid JSON"),
        (zlib.compress(b" " * (80 << 20)), "inflate to one zlib stream"),
    ]:
        t = dict(load(packed))
        t["manifest"] = np.frombuffer(blob, dtype=np.uint8)
        meta = dict(read_header(packed)["__metadata__"], manifest_sha256=hashlib.sha256(blob).hexdigest())
        with pytest.raises(FormatError, match=match):
            unpack_state(save(t, metadata=meta))


def test_a_payload_may_not_claim_the_manifest(packed):
    bad = with_manifest(packed, lambda entries: entries[0].update(payload="manifest"))
    with pytest.raises(FormatError, match="payload may not be the manifest"):
        unpack_state(bad)
