"""GGUF export: our codes in Q4_1 / Q8_0 blocks, reloaded by transformers' GGUF reader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slimtorch.core.errors import UnsupportedModelError
from slimtorch.export.gguf import export_gguf
from slimtorch.quantize.rtn import quantize_rtn
from tests.llm_fixtures import tiny_ids, tiny_llama


def _reload(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.mark.parametrize(
    "grid",
    [
        {"bits": 4, "group_size": 32},
        {"bits": 4, "group_size": 64},
        {"bits": 3, "group_size": None},
        {"bits": 8, "group_size": 32, "symmetric": True},
    ],
)
def test_quantized_model_reloads_in_transformers(tmp_path, grid):
    model = quantize_rtn(tiny_llama(), {"grid": grid})
    back = _reload(export_gguf(model, tmp_path / "m.gguf"))
    ids = tiny_ids(2, 10)
    # the only difference: scales (and Q4_1's minimum) stored as float16
    for name in ("self_attn.q_proj", "self_attn.k_proj", "mlp.down_proj"):
        ours = model.model.layers[1].get_submodule(name)
        theirs = back.model.layers[1].get_submodule(name).weight
        tol = 2e-3 * float(ours.scales.abs().max()) * 2 ** grid["bits"]
        assert torch.allclose(theirs, ours.weight, atol=tol)
    assert torch.allclose(back(ids).logits, model(ids).logits, atol=5e-3)


def test_the_file_holds_our_codes(tmp_path):
    import gguf

    model = quantize_rtn(tiny_llama(), {"grid": {"bits": 4, "group_size": 32}})
    reader = gguf.GGUFReader(str(export_gguf(model, tmp_path / "m.gguf")))
    t = next(t for t in reader.tensors if t.name == "blk.0.attn_v.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.Q4_1
    blocks = np.asarray(t.data).reshape(-1, 20)
    qs = blocks[:, 4:]
    codes = np.concatenate([qs & 15, qs >> 4], axis=1).reshape(model.model.layers[0].self_attn.v_proj.codes.shape)
    assert np.array_equal(codes, model.model.layers[0].self_attn.v_proj.codes.numpy())


def test_float_model_round_trips(tmp_path):
    model = tiny_llama()
    back = _reload(export_gguf(model, tmp_path / "f.gguf"))
    ids = tiny_ids(1, 8)
    assert torch.allclose(back(ids).logits, model(ids).logits, atol=1e-5)


def test_grids_gguf_cannot_hold_are_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    with pytest.raises(UnsupportedModelError, match="symmetric"):
        export_gguf(quantize_rtn(tiny_llama(), {"grid": {"bits": 8, "group_size": 32}}), tmp_path / "a.gguf")
    with pytest.raises(UnsupportedModelError, match="32 weights"):
        export_gguf(quantize_rtn(tiny_llama(), {"grid": {"bits": 4, "group_size": 16}}), tmp_path / "b.gguf")
    with pytest.raises(UnsupportedModelError, match="llama-architecture"):
        export_gguf(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64)), tmp_path / "c.gguf")
    assert not list(tmp_path.iterdir())  # nothing half-written
    (tmp_path / "d.gguf").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        export_gguf(tiny_llama(), tmp_path / "d.gguf")
    assert (tmp_path / "d.gguf").read_bytes() == b"mine"


def test_cli_writes_a_gguf_file(tmp_path):
    import contextlib
    import io
    import json

    from slimtorch.cli import main
    from tests.llm_dirs import tiny_llama_dir

    lm = tiny_llama_dir(tmp_path / "lm")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["export-lm", "--hf", str(lm), "--task", "causal-lm", str(tmp_path / "m.gguf"), "--format", "gguf"])
    assert rc == 0 and json.loads(out.getvalue())["format"] == "gguf"
    ids = tiny_ids(1, 6)
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(lm, dtype=torch.float32).eval()
    assert torch.allclose(_reload(tmp_path / "m.gguf")(ids).logits, ref(ids).logits, atol=1e-5)
