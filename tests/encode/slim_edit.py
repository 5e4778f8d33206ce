"""Editing ``.slim`` files in tests: read and re-sign the manifest of either format version.

Tests that check the *semantic* checks of the reader need files whose checksums are
right but whose manifest says something wrong; these helpers make them for version 2
(zlib-compressed manifest tensor) and version 1 (JSON strings in the metadata).
"""

import hashlib
import json
import zlib

from safetensors.numpy import load, save

from slimtorch.encode.format import MANIFEST, read_header


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def metadata(data: bytes) -> dict:
    return dict(read_header(data)["__metadata__"])


def manifest_doc(data: bytes) -> dict:
    """``{"tensors": [...], "arch": ...}`` of a file of either version."""
    meta = metadata(data)
    if meta.get("version") == "1":
        return {"tensors": json.loads(meta["manifest"])["tensors"], "arch": json.loads(meta["arch"])}
    return json.loads(zlib.decompress(load(data)[MANIFEST].tobytes()))


def rewrite(data: bytes, edit_meta) -> bytes:
    """Re-save a file after ``edit_meta(metadata)`` (no re-signing)."""
    meta = metadata(data)
    edit_meta(meta)
    return save(load(data), metadata=meta)


def resigned(data: bytes, doc, tensors: dict | None = None) -> bytes:
    """The file with its manifest document replaced by ``doc`` (any JSON value) and re-signed."""
    import numpy as np

    meta, arrays = metadata(data), dict(tensors if tensors is not None else load(data))
    if meta.get("version") == "1":
        arch = doc.get("arch") if isinstance(doc, dict) else None
        meta["arch"] = json.dumps(arch, sort_keys=True, allow_nan=True)
        manifest = {
            "arch_sha256": _sha(meta["arch"].encode()),
            "tensors": doc.get("tensors") if isinstance(doc, dict) else doc,
        }
        meta["manifest"] = json.dumps(manifest, allow_nan=True)
        meta["manifest_sha256"] = _sha(meta["manifest"].encode())
    else:
        packed = zlib.compress(json.dumps(doc, allow_nan=True).encode())
        arrays[MANIFEST] = np.frombuffer(packed, dtype=np.uint8)
        meta["manifest_sha256"] = _sha(packed)
    return save(arrays, metadata=meta)


def with_doc(data: bytes, edit_doc, tensors: dict | None = None) -> bytes:
    """Edit the manifest document (``tensors`` list and ``arch``) in place and re-sign it."""
    doc = manifest_doc(data)
    edit_doc(doc)
    return resigned(data, doc, tensors)


def with_manifest(data: bytes, edit_entries, tensors: dict | None = None) -> bytes:
    """Edit the manifest's tensor entries and re-sign, so only the semantic checks can catch it."""
    return with_doc(data, lambda doc: edit_entries(doc["tensors"]), tensors)
