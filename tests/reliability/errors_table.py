"""Print the markdown table of docs/errors.md by triggering every bad input for real.

Run: ``.venv/bin/python tests/reliability/errors_table.py > /tmp/table.md``
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
warnings.simplefilter("ignore")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import slimtorch  # noqa: E402
from tests.reliability import fuzz_harness as H  # noqa: E402
from tests.reliability.test_no_code_execution import Evil  # noqa: E402

torch.set_num_threads(1)
T = Path(tempfile.mkdtemp(prefix="errs_"))


def w(name: str, data: bytes) -> Path:
    p = T / name
    p.write_bytes(data)
    return p


def meta(data: bytes, key: str, value) -> bytes:
    hdr, body = H._st_split(data)
    hdr["__metadata__"][key] = value if isinstance(value, str) else json.dumps(value)
    return H._st_join(hdr, body)


def manifest(data: bytes, edit) -> bytes:
    from tests.encode.slim_edit import with_manifest

    return with_manifest(data, edit)


def _state_file(folder: Path, width: int) -> Path:
    """A plain state dict of examples/my_models.py:MnistCNN at ``width`` (torch.save)."""
    from slimtorch.models import user

    path = folder / f"cnn{width}.pth"
    torch.save(user.import_class("examples/my_models.py:MnistCNN")(width=width).state_dict(), path)
    return path


def main() -> None:
    import os

    from slimtorch.models import user

    os.chdir(Path(__file__).resolve().parents[2])  # example class paths are relative to the repository
    from slimtorch.data.cifar import read_cifar_binary, read_cifar_python
    from slimtorch.data.idx import read_idx
    from slimtorch.pipeline.recipe import load_recipe, recipe_from_dict
    from slimtorch.quantize.model import load_quantized
    from slimtorch.train.checkpoint import load_checkpoint

    slim, mf, ck = H.seed_slim(), H.seed_model_file(), H.seed_checkpoint()
    evil = pickle.dumps(Evil(T / "pwned"), protocol=2)
    tbuf = io.BytesIO()
    torch.save({"x": Evil(T / "pwned")}, tbuf)
    cases = [
        (".slim", "missing file", lambda: slimtorch.load(T / "nope.slim")),
        (".slim", "empty file", lambda: slimtorch.load(w("e.slim", b""))),
        (".slim", "truncated to half", lambda: slimtorch.load(w("t.slim", slim[: len(slim) // 2]))),
        (
            ".slim",
            "one bit flipped in a payload",
            lambda: slimtorch.load(w("b.slim", slim[:-40] + bytes([slim[-40] ^ 1]) + slim[-39:])),
        ),
        (
            ".slim",
            "format tag changed",
            lambda: (
                H and __import__("slimtorch.encode.model", fromlist=["x"]).load_packed(meta(slim, "format", "other"))
            ),
        ),
        (
            ".slim",
            "version 3",
            lambda: __import__("slimtorch.encode.model", fromlist=["x"]).load_packed(meta(slim, "version", "3")),
        ),
        (
            ".slim",
            "manifest checksum wrong",
            lambda: __import__("slimtorch.encode.model", fromlist=["x"]).load_packed(
                meta(slim, "manifest_sha256", "0" * 64)
            ),
        ),
        (
            ".slim",
            "tensor shape 2^40 (re-signed)",
            lambda: __import__("slimtorch.encode", fromlist=["x"]).unpack_state(
                manifest(slim, lambda t: t[0].__setitem__("shape", [2**20, 2**20]))
            ),
        ),
        (
            ".slim",
            "coder name a list (re-signed)",
            lambda: __import__("slimtorch.encode", fromlist=["x"]).unpack_state(
                manifest(
                    slim, lambda t: [e["weight_stream"].__setitem__("coder", ["x"]) for e in t if e["kind"] == "shared"]
                )
            ),
        ),
        (
            ".slim",
            "symbol count 2^40 (re-signed)",
            lambda: __import__("slimtorch.encode", fromlist=["x"]).unpack_state(
                manifest(
                    slim, lambda t: [e["weight_stream"].__setitem__("n", 2**40) for e in t if e["kind"] == "shared"]
                )
            ),
        ),
        (
            ".slim",
            "arch is a number (re-signed)",
            lambda: __import__("slimtorch.encode.model", fromlist=["x"]).load_packed(
                __import__("tests.encode.slim_edit", fromlist=["x"]).with_doc(slim, lambda d: d.update(arch=7))
            ),
        ),
        (".slim", "a pickle renamed .slim", lambda: slimtorch.load(w("p.slim", evil))),
        ("model file", "a torch.save zip", lambda: slimtorch.load(w("z.safetensors", tbuf.getvalue()))),
        ("model file", "a raw pickle", lambda: slimtorch.load(w("p.safetensors", evil))),
        ("model file", "random bytes", lambda: slimtorch.load(w("r.safetensors", bytes(range(256)) * 4))),
        ("model file", "format tag missing", lambda: slimtorch.load(w("f.safetensors", meta(mf, "format", "")))),
        (
            "model file",
            "arch kwargs not a mapping",
            lambda: slimtorch.load(w("a.safetensors", meta(mf, "arch", {"name": "mlp", "kwargs": True}))),
        ),
        (
            "model file",
            "arch declares 2^59 inputs",
            lambda: slimtorch.load(
                w("h.safetensors", meta(mf, "arch", {"name": "mlp", "kwargs": {"hidden": [24], "in_features": 2**59}}))
            ),
        ),
        (
            "model file",
            "arch declares a 1M-wide layer",
            lambda: slimtorch.load(
                w(
                    "h2.safetensors",
                    meta(
                        mf, "arch", {"name": "mlp", "kwargs": {"hidden": [2**20], "num_classes": 4, "in_features": 32}}
                    ),
                )
            ),
        ),
        (
            "model file",
            "unknown model name",
            lambda: slimtorch.load(w("u.safetensors", meta(mf, "arch", {"name": "nope"}))),
        ),
        (
            "model file",
            "sparse shape of strings",
            lambda: slimtorch.load(w("s.safetensors", meta(mf, "sparse", {"fc1.weight": ["a"]}))),
        ),
        (
            "model file",
            "sparse metadata not an object",
            lambda: slimtorch.load(w("s2.safetensors", meta(mf, "sparse", True))),
        ),
        ("model file", "no arch and no model=", lambda: slimtorch.load(w("n.safetensors", meta(mf, "arch", None)))),
        (
            "model file",
            "arch names a class (never imported)",
            lambda: slimtorch.load(w("c.safetensors", meta(mf, "arch", {"class": "os:system", "kwargs": {}}))),
        ),
        (
            "model file",
            "arch names a missing HF directory",
            lambda: slimtorch.load(
                w("hf.safetensors", meta(mf, "arch", {"hf": str(T / "no_dir"), "task": "causal-lm"}))
            ),
        ),
        (
            "user model",
            "class reference without ':'",
            lambda: user.UserModelSource.from_dict({"class": "mypkg.Net"}, "model"),
        ),
        ("user model", "class not in the file", lambda: user.import_class("examples/my_models.py:Nope")),
        (
            "user model",
            "weights of another shape",
            lambda: user.build_user_model(
                user.UserModelSource.from_dict(
                    {
                        "class": "examples/my_models.py:MnistCNN",
                        "kwargs": {"width": 8},
                        "weights": str(_state_file(T, 16)),
                    }
                )
            ),
        ),
        (
            "user model",
            "a pickled whole model as weights",
            lambda: user.build_user_model(
                user.UserModelSource.from_dict(
                    {"class": "examples/my_models.py:MnistCNN", "weights": str(w("whole.pt", tbuf.getvalue()))}
                )
            ),
        ),
        ("quantized", "a raw pickle", lambda: load_quantized(w("q.safetensors", evil))),
        ("recipe", "missing file", lambda: load_recipe(T / "nope.yaml")),
        (
            "recipe",
            "`!!python/object/apply:os.system`",
            lambda: load_recipe(w("r1.yaml", b"name: !!python/object/apply:os.system ['true']\n")),
        ),
        ("recipe", "not UTF-8", lambda: load_recipe(w("r2.yaml", b"\xff\xfename: x\n"))),
        ("recipe", "5000 nested `[`", lambda: load_recipe(w("r3.yaml", b"[" * 5000))),
        ("recipe", "billion laughs (9 levels of aliases)", lambda: load_recipe(w("r4.yaml", H.YAML_NASTIES[2]))),
        ("recipe", "a list, not a mapping", lambda: load_recipe(w("r5.yaml", b"- 1\n"))),
        (
            "recipe",
            "unknown top-level key",
            lambda: recipe_from_dict({"name": "x", "model": {"name": "mlp"}, "bogus": 1}),
        ),
        (
            "recipe",
            "unknown stage type",
            lambda: recipe_from_dict({"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "nope"}]}),
        ),
        (
            "recipe",
            "stage type is a list",
            lambda: recipe_from_dict({"name": "x", "model": {"name": "mlp"}, "stages": [{"type": [1]}]}),
        ),
        (
            "recipe",
            "wrong type (`epochs: many`)",
            lambda: recipe_from_dict(
                {"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "train", "epochs": "many"}]}
            ),
        ),
        (
            "recipe",
            "out of range (`sparsity: 1.5`)",
            lambda: recipe_from_dict(
                {"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "prune", "prune": {"sparsity": 1.5}}]}
            ),
        ),
        (
            "recipe",
            "unknown stage key",
            lambda: recipe_from_dict(
                {"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "train", "epoch": 1}]}
            ),
        ),
        (
            "recipe",
            "an old layer field (`ignored_layers`)",
            lambda: recipe_from_dict(
                {
                    "name": "x",
                    "model": {"name": "mlp"},
                    "stages": [{"type": "prune_channels", "prune": {"ignored_layers": ["fc1"]}}],
                }
            ),
        ),
        (
            "recipe",
            "kmeans `bits: [x]`",
            lambda: recipe_from_dict(
                {"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "kmeans", "bits": ["x"]}]}
            ),
        ),
        (
            "recipe",
            "int8 setting of another mode",
            lambda: recipe_from_dict(
                {
                    "name": "x",
                    "model": {"name": "mlp"},
                    "stages": [{"type": "int8", "mode": "dynamic", "calibration": "minmax"}],
                }
            ).stage_configs(),
        ),
        (
            "recipe",
            "int8 `keep_float` (now `layers.exclude`)",
            lambda: recipe_from_dict(
                {"name": "x", "model": {"name": "mlp"}, "stages": [{"type": "int8", "keep_float": ["fc1"]}]}
            ).stage_configs(),
        ),
        ("checkpoint", "missing file", lambda: load_checkpoint(T / "nope.pt")),
        ("checkpoint", "holds a code-running object", lambda: load_checkpoint(w("c1.pt", tbuf.getvalue()))),
        ("checkpoint", "raw pickle / legacy format", lambda: load_checkpoint(w("c2.pt", evil))),
        ("checkpoint", "truncated", lambda: load_checkpoint(w("c3.pt", ck[: len(ck) // 2]))),
        ("checkpoint", "deflate-compressed entries", lambda: load_checkpoint(w("c4.pt", _deflate(ck)))),
        ("checkpoint", "a model file", lambda: load_checkpoint(w("c5.pt", mf))),
        ("IDX", "missing file", lambda: read_idx(T / "nope-idx3-ubyte")),
        ("IDX", "bad magic", lambda: read_idx(w("i1", b"\x01\x02\x08\x01" + b"\x00" * 8))),
        ("IDX", "unknown dtype code", lambda: read_idx(w("i2", b"\x00\x00\x42\x01\x00\x00\x00\x01x"))),
        ("IDX", "declares 2^32 x 2^32 items", lambda: read_idx(w("i3", b"\x00\x00\x08\x02" + b"\xff" * 8 + b"x"))),
        ("IDX", "gzip with corrupt deflate data", lambda: read_idx(w("i4.gz", _corrupt_gz()))),
        ("IDX", "a directory", lambda: read_idx(T)),
        ("CIFAR binary", "not whole records", lambda: read_cifar_binary(w("d.bin", b"\x01" * 3000))),
        ("CIFAR binary", "label 200", lambda: read_cifar_binary(w("d2.bin", b"\xc8" + b"\x00" * 3072))),
        ("CIFAR python", "pickle calling `exec`", lambda: read_cifar_python(w("data_batch_1", evil))),
        ("CIFAR python", "huge BYTEARRAY8 length", lambda: read_cifar_python(w("data_batch_2", H.PICKLE_NASTIES[8]))),
        ("CIFAR python", "labels of 10^30", lambda: read_cifar_python(w("data_batch_3", H.PICKLE_NASTIES[0]))),
        ("CIFAR python", "not a dict", lambda: read_cifar_python(w("data_batch_4", pickle.dumps([1], protocol=2)))),
    ]
    print("| File | Bad input | Error | Message |")
    print("|---|---|---|---|")
    for kind, what, fn in cases:
        try:
            fn()
            err, msg = "(none)", "loaded"
        except Exception as exc:  # noqa: BLE001
            err, msg = type(exc).__name__, str(exc).replace(str(T) + "/", "").replace(str(T), "DIR")
        msg = msg.replace("|", "\\|").replace("\n", " ")
        if len(msg) > 300:
            msg = msg[:300] + "…"
        print(f"| {kind} | {what} | `{err}` | {msg} |")
    assert not (T / "pwned").exists()


def _deflate(data: bytes) -> bytes:
    zin, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for i in zin.infolist():
            z.writestr(i.filename, zin.read(i.filename))
    return out.getvalue()


def _corrupt_gz() -> bytes:
    gz = bytearray(gzip.compress(H.idx_bytes(np.arange(64, dtype=np.uint8).reshape(4, 4, 4)), mtime=0))
    gz[12] ^= 0xFF
    return bytes(gz)


if __name__ == "__main__":
    main()
