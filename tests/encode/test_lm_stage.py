"""Recipe stages quantize_embedding and slim_lm on a tiny Llama.

The .slim file is the artifact and the run continues from it.
"""

import json

import pytest
import torch

from slimtorch.core.errors import ConfigError
from slimtorch.encode.lm import load_slim_lm, slim_breakdown
from slimtorch.pipeline import run_recipe
from slimtorch.quantize.qembedding import QuantEmbedding
from tests.llm_dirs import tiny_llama_dir, tiny_lm_recipe

G32 = {"bits": 4, "group_size": 32, "mse_search": False}


def _recipe(lm_dir, stages):
    return tiny_lm_recipe(lm_dir, stages, "tiny_slim")


def test_slim_stage_writes_a_file_that_reloads_to_the_run_model(tmp_path):
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    stages = [
        {"type": "sparsegpt", "sparsity": 0.5, "grid": G32, "save": False},
        {"type": "quantize_embedding", "grid": {"bits": 4, "group_size": 32, "float_zero": True}},
        {"type": "slim_lm"},
    ]
    res = run_recipe(_recipe(lm_dir, stages), tmp_path / "run", verbose=False)
    path = res.out_dir / "03_slim_lm" / "model.slim"
    last = res.records[-1]
    assert last["name"] == "slim_lm" and last["size_bytes"] == path.stat().st_size
    info = json.loads((res.out_dir / "results.json").read_text())["stages"]["slim_lm"]
    assert info["breakdown"] == slim_breakdown(path) and info["bits_per_weight"] < 8
    # the run continued with the decoded model: reloading the file gives its outputs exactly
    back = load_slim_lm(path)
    assert isinstance(back.model.embed_tokens, QuantEmbedding)
    ids = torch.arange(32).reshape(1, 32)
    with torch.no_grad():
        assert torch.equal(back(ids).logits, res.model(ids).logits)
    assert last["perplexity"] < res.records[0]["perplexity"] * 1.5  # still a language model, not noise


def test_slim_stage_config_is_validated():
    from slimtorch.encode.lm_stage import SlimLMStageConfig

    with pytest.raises(ConfigError, match="filename"):
        SlimLMStageConfig.from_dict({"filename": "../x.slim"})
    with pytest.raises(ConfigError, match="index"):
        SlimLMStageConfig.from_dict({"index": "zigzag"})
