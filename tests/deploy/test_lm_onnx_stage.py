"""Recipe stage ``onnx_lm``: the deployed file's perplexity, size and tokens/s reach the stage's row."""

from __future__ import annotations

import pytest

from slimtorch.core.errors import ConfigError
from slimtorch.pipeline import recipe_from_dict, run_recipe
from tests.llm_dirs import TINY_TEXT, tiny_llama_dir

G32 = {"bits": 4, "group_size": 32, "mse_search": False}


def _recipe(lm_dir, stages):
    return recipe_from_dict({"name": "tiny_deploy", "model": {"hf": str(lm_dir), "task": "causal-lm"},
                             "data": {"name": "text", "kwargs": TINY_TEXT}, "stages": stages})


def test_exact_export_reports_the_same_perplexity_as_pytorch(tmp_path):
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    stages = [{"type": "rtn_weight_only", "grid": G32},
              {"type": "onnx_lm", "embedding_bits": None, "accuracy_level": 0, "speed_rounds": 1, "new_tokens": 4,
               "threads": 1}]
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
    stages = [{"type": "rtn_weight_only", "grid": G32},
              {"type": "onnx_lm", "embedding_bits": None, "speed_rounds": 0},
              {"type": "onnx_lm", "embedding_bits": 4, "embedding_group_size": 32, "speed_rounds": 0}]
    res = run_recipe(_recipe(lm_dir, stages), tmp_path / "run", verbose=False)
    float_emb, int4_emb = res.records[2], res.records[3]
    assert int4_emb["size_bytes"] < float_emb["size_bytes"]
    assert "decode_tokens_per_s" not in int4_emb


def test_unknown_export_field_is_named(tmp_path):
    with pytest.raises(ConfigError, match="embeding_bits"):
        _recipe(tmp_path, [{"type": "onnx_lm", "embeding_bits": 4}])
