"""Recipe stage ``onnx_lm``: the deployed file's perplexity, size and tokens/s reach the stage's row."""

from __future__ import annotations

import pytest

from slimtorch.core.errors import ConfigError
from slimtorch.pipeline import run_recipe
from tests.llm_dirs import tiny_llama_dir, tiny_lm_recipe

G32 = {"bits": 4, "group_size": 32, "mse_search": False}


def _recipe(lm_dir, stages):
    return tiny_lm_recipe(lm_dir, stages, "tiny_deploy")


def test_exact_export_reports_the_same_perplexity_as_pytorch(tmp_path):
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    stages = [
        {"type": "rtn_weight_only", "grid": G32},
        {
            "type": "onnx_lm",
            "embedding_bits": None,
            "accuracy_level": 0,
            "speed_rounds": 1,
            "new_tokens": 4,
            "threads": 1,
        },
    ]
    res = run_recipe(_recipe(lm_dir, stages), tmp_path / "run", verbose=False)
    _, rtn, deployed = res.records
    assert deployed["runtime"].startswith("onnxruntime")
    assert deployed["perplexity"] == pytest.approx(rtn["perplexity"], rel=1e-4)  # same integers, float kernels
    assert deployed["artifact"].endswith("02_onnx_lm/onnx") and deployed["size_bytes"] > 0
    assert deployed["decode_tokens_per_s"] > 0 and deployed["prefill_ms"] > 0
    assert "decode tok/s" in (res.out_dir / "report.md").read_text()
    assert (res.out_dir / "model" / "slimtorch_quant.json").is_file()  # the PyTorch model is still saved


def test_quantized_embedding_makes_the_file_smaller(tmp_path):
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    stages = [
        {"type": "rtn_weight_only", "grid": G32},
        {"type": "onnx_lm", "embedding_bits": None, "speed_rounds": 0},
        {"type": "onnx_lm", "embedding_bits": 4, "embedding_group_size": 32, "speed_rounds": 0},
    ]
    res = run_recipe(_recipe(lm_dir, stages), tmp_path / "run", verbose=False)
    float_emb, int4_emb = res.records[2], res.records[3]
    assert int4_emb["size_bytes"] < float_emb["size_bytes"]
    assert "decode_tokens_per_s" not in int4_emb


def test_unknown_export_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match="embeding_bits"):
        _recipe(tmp_path, [{"type": "onnx_lm", "embeding_bits": 4}])


def _cli(argv):
    import contextlib
    import io

    from slimtorch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_cli_exports_generates_and_evaluates_the_onnx_file(tmp_path):
    import json

    lm_dir = tiny_llama_dir(tmp_path / "lm")
    rc, out, _ = _cli(
        [
            "export-lm",
            "--hf",
            str(lm_dir),
            "--task",
            "causal-lm",
            str(tmp_path / "onnx"),
            "--embedding-bits",
            "none",
            "--accuracy-level",
            "0",
        ]
    )
    assert rc == 0 and json.loads(out)["size_bytes"] > 0
    rc, text, err = _cli(
        [
            "generate",
            str(tmp_path / "onnx"),
            "--prompt",
            "The licence",
            "--max-new-tokens",
            "5",
            "--only-new",
            "--threads",
            "1",
        ]
    )
    assert rc == 0 and "tokens/s (ONNX Runtime" in err
    rc_pt, text_pt, _ = _cli(
        [
            "generate",
            "--hf",
            str(lm_dir),
            "--task",
            "causal-lm",
            "--prompt",
            "The licence",
            "--max-new-tokens",
            "5",
            "--only-new",
        ]
    )
    assert rc_pt == 0 and text.strip() == text_pt.strip()  # greedy: the same continuation as PyTorch
    args = ["--window", "32", "--windows", "2", "--sources", "licenses"]
    rc, onnx_eval, _ = _cli(["eval", str(tmp_path / "onnx"), *args])
    rc2, pt_eval, _ = _cli(["eval", "--hf", str(lm_dir), "--task", "causal-lm", *args])
    assert rc == rc2 == 0
    assert json.loads(onnx_eval)["perplexity"] == pytest.approx(json.loads(pt_eval)["perplexity"], rel=1e-4)
    rc, _, err = _cli(["generate", str(tmp_path / "onnx"), "--prompt", "x", "--greedy", "--top-k", "5"])
    assert rc != 0 and "--greedy" in err
