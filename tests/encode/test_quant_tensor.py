"""Group-quantized tensors in .slim files: bit-exact round trips of codes, scales and zeros, and refusal of bad data."""

import hashlib

import numpy as np
import pytest

from slimtorch.core.errors import FormatError
from slimtorch.encode import pack_state
from slimtorch.encode.format import read_header, unpack_shared
from slimtorch.encode.quant_tensor import QuantTensor, decode_quant, encode_quant
from tests.encode.slim_edit import manifest_doc, with_manifest


def make_quant(seed=0, rows=24, cols=72, group=32, bits=4, sparsity=0.5, half=True) -> QuantTensor:
    """Random codes with a fraction pruned (code == the group's zero), partial last group (72 = 2 x 32 + 8)."""
    rng = np.random.default_rng(seed)
    maxq = 2**bits - 1
    g = 1 if group is None else -(-cols // group)
    zeros = rng.integers(0, maxq + 1, (rows, g)).astype(np.float32)
    scales = rng.lognormal(-4, 0.5, (rows, g)).astype(np.float32)
    if half:
        scales = scales.astype(np.float16).astype(np.float32)
    zcol = np.repeat(zeros, cols if group is None else group, axis=1)[:, :cols]
    codes = np.clip(np.rint(zcol + rng.laplace(0, 2, (rows, cols))), 0, maxq)
    codes = np.where(rng.random((rows, cols)) < sparsity, zcol, codes).astype(np.uint8)
    return QuantTensor(codes, scales, zeros, bits, group)


@pytest.mark.parametrize("index", ["dense", "gap-raw", "bitmask", "gap"])
@pytest.mark.parametrize("coder", ["ans", "huffman"])
def test_every_index_scheme_round_trips_bit_exactly(index, coder):
    t = make_quant()
    meta, sections = encode_quant(t, index, (coder,), gap_bits=3)
    back = decode_quant(meta, sections, t.shape)
    assert back == t
    assert meta["nnz"] == int(t.nonzero_mask().sum()) < t.codes.size  # pruned codes are not counted


@pytest.mark.parametrize(
    "kw",
    [
        {"group": None},
        {"bits": 3, "group": 16},
        {"bits": 8, "sparsity": 0.0},
        {"sparsity": 1.0},
        {"half": False},
        {"rows": 0},
    ],
)
def test_grid_shapes_and_edge_cases_round_trip_through_the_container(kw):
    t = make_quant(**kw)
    back, _ = unpack_shared(pack_state({"w": t}, {}, "auto"))
    assert back["w"] == t
    # bitwise scales: float32 scales that are not float16 must not be rounded
    assert back["w"].scales.tobytes() == t.scales.tobytes()


def test_scales_take_float16_only_when_exact():
    stored = {}
    for half in (True, False):
        data = pack_state({"w": make_quant(half=half)}, {})
        stored[half] = manifest_doc(data)["tensors"][0]["scales"]["stored"]
    assert stored == {True: "float16", False: "float32"}


def test_fractional_zeros_are_stored_as_floats_with_dense_codes():
    t = make_quant()
    t = QuantTensor(t.codes, t.scales, t.zeros + 0.25, t.bits, t.group_size)  # HQQ-style zeros
    back, _ = unpack_shared(pack_state({"w": t}, {}))
    assert back["w"] == t
    with pytest.raises(ValueError, match="dense"):
        encode_quant(t, "bitmask")


def test_sparse_tensor_codes_smaller_than_dense_one():
    sparse = pack_state({"w": make_quant(rows=64, cols=256, sparsity=0.5)}, {})
    dense = pack_state({"w": make_quant(rows=64, cols=256, sparsity=0.0)}, {})
    assert len(sparse) < 0.85 * len(dense)


def test_invalid_tensors_are_refused():
    t = make_quant()
    with pytest.raises(ValueError, match="exceeds"):
        QuantTensor(t.codes | 0x10, t.scales, t.zeros, 4, 32)
    with pytest.raises(ValueError, match="scales"):
        QuantTensor(t.codes, t.scales[:, :1], t.zeros, 4, 32)


def _resign(edit):
    """Edit the first entry of a packed quantized tensor's manifest (checksums recomputed)."""
    return with_manifest(pack_state({"w": make_quant()}, {}), lambda entries: edit(entries[0]))


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda e: e.update(bits=2), "zero above|outside|code"),
        (lambda e: e.update(nnz=e["nnz"] + 1), "non-zero count"),
        (lambda e: e.update(index="zigzag"), "unknown index scheme"),
        (lambda e: e.update(shape=[24, 72, 1]), "2-D"),
        (lambda e: e.update(shape=[24, 71]), "length|symbols|differ|position|values"),
        (lambda e: e["scales"].update(stored="float64"), "float16 or float32"),
        (lambda e: e.update(zeros_kind="other"), "zeros kind"),
        (lambda e: e.update(group_size=0), "group_size"),
    ],
)
def test_inconsistent_manifests_raise_format_errors_naming_the_field(edit, match):
    with pytest.raises(FormatError, match=match):
        unpack_shared(_resign(edit))


def test_a_flipped_payload_byte_is_caught_by_its_checksum():
    from safetensors.numpy import load, save

    data = pack_state({"w": make_quant()}, {})
    tensors = {k: v.copy() for k, v in load(data).items()}
    tensors["p0"][len(tensors["p0"]) // 2] ^= 4
    with pytest.raises(FormatError, match="tensor 'w': payload checksum"):
        unpack_shared(save(tensors, metadata=read_header(data)["__metadata__"]))
    assert hashlib.sha256(data).hexdigest()  # (the original stays readable)
    assert unpack_shared(data)[0]["w"] == make_quant()
