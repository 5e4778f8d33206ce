"""calibrate_streamed under every blockwise method: AWQ, Wanda and SparseGPT streamed give their in-memory files."""

from __future__ import annotations

import pytest
import torch

from slimtorch.quantize.qlinear import load_quantized_lm, save_quantized_lm
from tests.llm_dirs import tiny_llama_dir
from tests.llm_fixtures import tiny_ids
from tests.quantize.test_gptq_streamed import same_folder


def _methods():
    from slimtorch.prune.sparsegpt import prune_sparsegpt, prune_sparsegpt_streamed
    from slimtorch.prune.wanda import prune_wanda, prune_wanda_streamed
    from slimtorch.quantize.awq import quantize_awq, quantize_awq_streamed

    return {
        "awq": (quantize_awq, quantize_awq_streamed, {"grid": {"bits": 4, "group_size": 48}, "n_grid": 3}),
        "wanda": (prune_wanda, prune_wanda_streamed, {"sparsity": 0.5}),
        "sparsegpt_w4": (
            prune_sparsegpt,
            prune_sparsegpt_streamed,
            {"pattern": "2:4", "grid": {"bits": 4, "group_size": 32}},
        ),
        "sparsegpt_refit": (prune_sparsegpt, prune_sparsegpt_streamed, {"sparsity": 0.5, "refit": True}),
        "wanda_refit": (prune_wanda, prune_wanda_streamed, {"sparsity": 0.5, "refit": True}),
    }


@pytest.mark.parametrize("name", ["awq", "wanda", "sparsegpt_w4", "sparsegpt_refit", "wanda_refit"])
def test_streamed_method_equals_in_memory(name, tmp_path):
    from transformers import AutoModelForCausalLM

    in_memory, streamed, config = _methods()[name]
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    ids = tiny_ids(5, 16, seed=3)
    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32).eval()
    mem = save_quantized_lm(in_memory(model, config, ids, inplace=True), tmp_path / "mem")
    out = streamed(lm_dir, tmp_path / "streamed", config, ids)
    same_folder(mem, out)
    reloaded = load_quantized_lm(out)
    w = reloaded.get_submodule("model.layers.1.mlp.down_proj").weight
    if name != "awq":  # half the weights really are zero after the reload
        assert (w == 0).float().mean() >= 0.5
