"""Files are data, never code: a malicious pickle or YAML tag given to every loader is refused unrun.

The payload's ``__reduce__`` creates a marker file when unpickled; a control check shows
that plain ``pickle.loads`` does run it, so the payload is live. Every slimtorch loader
must raise a documented error and leave no marker behind.
"""

from __future__ import annotations

import ast
import io
import pickle
from pathlib import Path

import pytest
import torch

import slimtorch
from slimtorch.core.errors import ConfigError, DataNotFoundError, FormatError, UnsupportedModelError

DOCUMENTED = (FormatError, ConfigError, DataNotFoundError, FileNotFoundError, UnsupportedModelError)
SRC = Path(slimtorch.__file__).parent


class Evil:
    """Unpickling this runs code: it creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _payloads(marker: Path) -> dict[str, bytes]:
    evil = Evil(marker)
    buf = io.BytesIO()
    torch.save({"kind": "slimtorch.checkpoint.v1", "model": {}, "x": evil}, buf)
    legacy = io.BytesIO()
    torch.save({"kind": "slimtorch.checkpoint.v1", "x": evil}, legacy, _use_new_zipfile_serialization=False)
    return {
        "pickle-p2": pickle.dumps(evil, protocol=2),
        "pickle-p5": pickle.dumps({b"data": evil, b"labels": [evil]}, protocol=5),
        "torch-zip": buf.getvalue(),
        "torch-legacy": legacy.getvalue(),
    }


def _loaders():
    from slimtorch.data.cifar import read_cifar_python
    from slimtorch.data.idx import read_idx
    from slimtorch.encode import load_slim
    from slimtorch.encode.model import load_packed
    from slimtorch.io.model_file import load_model
    from slimtorch.quantize.model import load_quantized
    from slimtorch.train.checkpoint import load_checkpoint

    return {
        "load_model": load_model,
        "slimtorch.load": slimtorch.load,
        "load_packed(path)": load_packed,
        "load_packed(bytes)": lambda p: load_packed(Path(p).read_bytes()),
        "load_slim": load_slim,
        "load_checkpoint": load_checkpoint,
        "read_idx": read_idx,
        "read_cifar_python": read_cifar_python,
        "load_quantized": load_quantized,
    }


def test_payload_is_live(tmp_path):
    marker = tmp_path / "pwned"
    pickle.loads(_payloads(marker)["pickle-p2"])  # noqa: S301 - the control: plain pickle runs it
    assert marker.exists()


@pytest.mark.parametrize("loader", list(_loaders()))
@pytest.mark.parametrize("payload", ["pickle-p2", "pickle-p5", "torch-zip", "torch-legacy"])
def test_every_loader_refuses_a_malicious_pickle(tmp_path, loader, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(_payloads(marker)[payload])
    with pytest.raises(DOCUMENTED):
        _loaders()[loader](path)
    assert not marker.exists(), f"{loader} executed code from a {payload} file"


@pytest.mark.parametrize(
    "tag",
    [
        "!!python/object/apply:builtins.exec [\"open('{m}', 'w').close()\"]",
        "!!python/object/apply:os.system ['touch {m}']",
        "!!python/object/new:builtins.exec [\"open('{m}', 'w').close()\"]",
        "!!python/name:builtins.exec",
    ],
)
@pytest.mark.parametrize("where", ["top", "name", "stage"])
def test_recipe_refuses_python_yaml_tags(tmp_path, tag, where):
    from slimtorch.pipeline.recipe import load_recipe

    marker = tmp_path / "pwned"
    value = tag.format(m=marker)
    text = {
        "top": value + "\n",
        "name": f"name: {value}\nmodel: {{name: mlp}}\n",
        "stage": f"name: x\nmodel: {{name: mlp}}\nstages:\n  - type: train\n    epochs: {value}\n",
    }[where]
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(path)
    assert not marker.exists()


# ------------------------------------------------------------------ static scan of src/
SAFE_PICKLE = SRC / "data" / "_safe_pickle.py"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def unsafe_calls(source: str, filename: str) -> list[str]:
    """``file:line what`` for every call that can run code from data."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        tail = name.rsplit(".", 1)[-1]
        where = f"{filename}:{node.lineno} {name}"
        if name in ("eval", "exec", "builtins.eval", "builtins.exec", "compile", "__import__"):
            found.append(where)
        elif name in (
            "pickle.load",
            "pickle.loads",
            "pickle.Unpickler",
            "cPickle.loads",
            "marshal.loads",
            "marshal.load",
            "shelve.open",
            "dill.loads",
            "dill.load",
            "joblib.load",
            "cloudpickle.loads",
            "numpy.load",
            "np.load",
            "yaml.unsafe_load",
            "yaml.full_load",
            "pickle.Unpickler.load",
        ):
            if name in ("np.load", "numpy.load"):
                ap = _kw(node, "allow_pickle")
                if ap is None or (isinstance(ap, ast.Constant) and ap.value is False):
                    continue
            found.append(where)
        elif name == "torch.load" or tail == "load" and name.startswith("torch"):
            wo = _kw(node, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                found.append(where + " without weights_only=True")
        elif name == "yaml.load":
            loader = _kw(node, "Loader")
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if _dotted(loader) not in ("yaml.SafeLoader", "yaml.CSafeLoader", "SafeLoader", "CSafeLoader"):
                found.append(where + " without SafeLoader")
    return found


def test_scanner_catches_what_it_should():
    bad = (
        "import pickle, torch, yaml\n"
        "pickle.loads(b)\ntorch.load(p)\ntorch.load(p, weights_only=False)\nyaml.load(s)\n"
        "yaml.load(s, Loader=yaml.Loader)\neval('1')\nexec('x=1')\nnp.load(p, allow_pickle=True)\n"
    )
    good = "torch.load(p, weights_only=True)\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\nnp.load(p)\n"
    assert len(unsafe_calls(bad, "bad.py")) == 8
    assert unsafe_calls(good, "good.py") == []


def test_no_code_executing_load_in_src():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        hits = unsafe_calls(path.read_text(), str(path.relative_to(SRC)))
        if path == SAFE_PICKLE:  # the one restricted unpickler: subclasses pickle.Unpickler, allow-listed globals
            hits = [h for h in hits if "pickle.Unpickler" not in h]
        found += hits
    assert found == [], "code-executing loads in src/:\n" + "\n".join(found)


def test_the_only_unpickler_is_the_restricted_one():
    users = [p for p in SRC.rglob("*.py") if "Unpickler" in p.read_text() or "pickle.load" in p.read_text()]
    assert users == [SAFE_PICKLE]
    text = SAFE_PICKLE.read_text()
    assert "def find_class" in text and "persistent_load" in text
