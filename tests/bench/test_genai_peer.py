"""bench/peers/genai_peer.py: builder options, input staging, sizes, feeds and scoring; end to end on a tiny Llama.

The pure parts need neither onnxruntime-genai nor the real model. The last two
tests build the tiny Llama of ``tests/llm_dirs.py`` with the real genai model
builder (skipped where ``bench/peers/setup_genai.sh`` has not run) and check the
peer's perplexity and greedy tokens against Hugging Face on the same weights.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bench.peers import genai_peer as G


def test_builder_command_pins_the_lm_head_choice_per_kind(tmp_path):
    fp32 = G.builder_command("fp32", tmp_path / "in", tmp_path / "out", tmp_path / "c", python="py")
    assert fp32[:3] == ["py", "-m", "onnxruntime_genai.models.builder"]
    assert fp32[fp32.index("-p") + 1] == "fp32" and fp32[fp32.index("-e") + 1] == "cpu"
    assert "--extra_options" not in fp32
    int4 = G.builder_command("int4", "in", "out", "c")
    extra = int4[int4.index("--extra_options") + 1 :]
    assert int4[int4.index("-p") + 1] == "int4"
    assert sorted(extra) == ["block_size=128", "nodes_to_exclude=/lm_head/MatMul"]
    int4_all = G.builder_command("int4_all", "in", "out", "c")
    assert int4_all[int4_all.index("--extra_options") + 1 :] == ["block_size=128"]
    with pytest.raises(ValueError, match="unknown genai build kind"):
        G.builder_command("int8", "in", "out", "c")


def test_builder_config_names_a_llama_only_when_missing():
    assert G.builder_config({"model_type": "llama", "architectures": None})["architectures"] == ["LlamaForCausalLM"]
    kept = {"model_type": "llama", "architectures": ["MyLlama"]}
    assert G.builder_config(kept)["architectures"] == ["MyLlama"]
    with pytest.raises(ValueError, match="qwen2"):
        G.builder_config({"model_type": "qwen2", "architectures": None})


def test_stage_input_links_weights_and_patches_only_the_copy(tmp_path):
    src = tmp_path / "hf"
    src.mkdir()
    (src / "config.json").write_text(
        json.dumps({"model_type": "llama", "architectures": None, "tie_word_embeddings": True})
    )
    (src / "model.safetensors").write_bytes(b"w" * 10)
    (src / "tokenizer.json").write_text("{}")
    (src / "notes.txt").write_text("not for the builder")
    stage = G.stage_input(src, tmp_path / "stage")
    assert (stage / "model.safetensors").is_symlink() and (stage / "model.safetensors").read_bytes() == b"w" * 10
    assert (stage / "tokenizer.json").is_symlink() and not (stage / "notes.txt").exists()
    assert json.loads((stage / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert json.loads((src / "config.json").read_text())["architectures"] is None  # the cached folder is untouched


def test_build_refuses_a_cached_folder_of_other_options(tmp_path):
    (tmp_path / "build.json").write_text(json.dumps({"precision": "int4", "extra_options": {"block_size": "32"}}))
    with pytest.raises(ValueError, match="delete the folder"):
        G.build("int4", tmp_path)
    with pytest.raises(ValueError, match="unknown genai build kind"):
        G.build("int3", tmp_path)


def test_model_bytes_counts_graph_and_external_data_only(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x" * 100)
    (tmp_path / "model.onnx.data").write_bytes(b"x" * 1000)
    (tmp_path / "tokenizer.json").write_bytes(b"x" * 7)
    (tmp_path / "genai_config.json").write_bytes(b"x" * 9)
    (tmp_path / "build.json").write_bytes(b"x" * 11)
    assert G.model_bytes(tmp_path) == 1100


def test_session_overlay_sets_decoder_threads():
    opts = G.session_overlay(2)["model"]["decoder"]["session_options"]
    assert opts["intra_op_num_threads"] == 2 and opts["inter_op_num_threads"] == 1
    with pytest.raises(ValueError):
        G.session_overlay(0)


def test_feeds_have_an_empty_cache_of_the_configured_heads():
    inputs = [
        ("input_ids", "tensor(int64)"),
        ("attention_mask", "tensor(int64)"),
        ("past_key_values.0.key", "tensor(float)"),
        ("past_key_values.0.value", "tensor(float)"),
    ]
    feeds = G.feeds_for(inputs, np.arange(5), kv_heads=3, head_size=64)
    assert feeds["input_ids"].shape == (1, 5) and feeds["input_ids"].dtype == np.int64
    assert feeds["attention_mask"].sum() == 5
    assert feeds["past_key_values.0.key"].shape == (1, 3, 0, 64)
    with pytest.raises(ValueError, match="unexpected input"):
        G.feeds_for([("inputs_embeds", "tensor(float)")], np.arange(5), 3, 64)


def test_window_nll_scores_like_slimtorch_perplexity():
    from slimtorch.measure.perplexity import perplexity
    from tests.llm_fixtures import tiny_ids, tiny_llama

    model, ids = tiny_llama(), tiny_ids(3, 40)
    total, count = 0.0, 0
    with torch.no_grad():
        for w in ids:
            s, c = G.window_nll(model(w[None]).logits[0].numpy(), w.numpy(), chunk=16)
            total, count = total + s, count + c
    ref = perplexity(model, ids.reshape(-1), 40, progress=False)
    assert count == ref.tokens_scored == 3 * 39
    assert math.exp(total / count) == pytest.approx(ref.perplexity, rel=1e-6)
    with pytest.raises(ValueError, match="logit rows"):
        G.window_nll(np.zeros((4, 8)), np.arange(5))


def test_deploy_keys_name_each_kind_and_take_the_median_round():
    kinds = {
        "fp32": {"decode_tokens_per_s": [50.0, 53.0, 52.0], "perplexity": {"perplexity": 41.19}, "size_bytes": 540},
        "int4_all": {"decode_tokens_per_s": [216.0, 247.0], "size_bytes": 80},
    }
    keys = G.deploy_keys(kinds)
    assert keys["peer_genai_fp32_tokens_per_s"] == 52.0
    assert keys["peer_genai_fp32_tokens_per_s_rounds"] == [50.0, 53.0, 52.0]
    assert keys["peer_genai_fp32_perplexity"] == 41.19 and keys["peer_genai_fp32_size_bytes"] == 540
    assert keys["peer_genai_int4_all_tokens_per_s"] == 231.5
    assert "peer_genai_int4_all_perplexity" not in keys and not any(k.startswith("peer_genai_int4_t") for k in keys)


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    pytest.importorskip("onnxruntime_genai")
    from tests.llm_dirs import tiny_llama_dir

    return tiny_llama_dir(tmp_path_factory.mktemp("genai_hf") / "hf")


@pytest.fixture(scope="module")
def tiny_build(tiny_hf, tmp_path_factory):
    return tiny_hf, G.build("fp32", tmp_path_factory.mktemp("genai") / "fp32", hf_dir=tiny_hf, nice=0)


def test_tiny_int4_builds_keep_or_quantize_the_head(tiny_hf, tmp_path):
    head_fp32 = G.build("int4", tmp_path / "int4", hf_dir=tiny_hf, nice=0)
    head_int4 = G.build("int4_all", tmp_path / "int4_all", hf_dir=tiny_hf, nice=0)
    assert head_fp32["lm_head_op"] == "MatMul" and head_int4["lm_head_op"] == "MatMulNBits"
    for facts in (head_fp32, head_int4):
        assert {q["op"] for q in facts["quantized"]} == {"MatMulNBits", "GatherBlockQuantized"}
        assert {q["block_size"] for q in facts["quantized"]} == {128}
    assert head_int4["size_bytes"] < head_fp32["size_bytes"]
    assert G.build("int4", tmp_path / "int4", hf_dir="/nonexistent") == head_fp32  # reused, not rebuilt


def test_tiny_fp32_build_matches_hugging_face_perplexity(tiny_build):
    from slimtorch.measure.perplexity import perplexity
    from slimtorch.models.llm import load_causal_lm
    from tests.llm_fixtures import tiny_ids

    hf, facts = tiny_build
    assert facts["size_bytes"] > 0 and facts["ops"].get("GroupQueryAttention") == 2
    assert facts["quantized"] == [] and facts["lm_head_op"] == "MatMul"
    assert "-p fp32 -e cpu" in facts["command"]
    ids = tiny_ids(2, 48, vocab=256)
    got = G.perplexity(facts["model_dir"], list(ids))
    model, _ = load_causal_lm(hf)
    ref = perplexity(model, ids.reshape(-1), 48, progress=False)
    assert got["tokens_scored"] == ref.tokens_scored
    assert got["perplexity"] == pytest.approx(ref.perplexity, rel=1e-3)


def test_tiny_fp32_greedy_decode_matches_hugging_face(tiny_build):
    from slimtorch.models.llm import load_causal_lm
    from tests.llm_fixtures import tiny_ids

    hf, facts = tiny_build
    prompt = tiny_ids(1, 8, vocab=256)
    out = G.decode_tokens_per_s(facts["model_dir"], prompt[0].numpy(), new_tokens=6, threads=1)
    assert out["new_tokens"] == 6 and out["decode_steps"] == 5 and out["decode_tokens_per_s"] > 0
    model, _ = load_causal_lm(hf)
    ref = model.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)[0, 8:].tolist()
    assert out["generated_ids"] == ref
