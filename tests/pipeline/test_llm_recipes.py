"""Language-model recipes on a tiny Llama: stages, perplexity records, saved folders that reload, resume, CLI."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from slimtorch.core.errors import ConfigError
from slimtorch.data.lm_text import lm_text
from slimtorch.pipeline import recipe_from_dict, run_recipe
from slimtorch.pipeline.context import Context
from slimtorch.pipeline.registry import STAGES
from slimtorch.quantize.qlinear import QuantLinear, load_quantized_lm
from tests.llm_dirs import TINY_TEXT, byte_tokenizer, tiny_llama_dir

G32 = {"bits": 4, "group_size": 32, "mse_search": False}  # (the range search is tested with the methods)
EVAL_ARGS = ["--window", "32", "--windows", "4", "--sources", "licenses"]


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory):
    return tiny_llama_dir(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def text():
    return lm_text(byte_tokenizer(), TINY_TEXT)


def _recipe(lm_dir, stages, data=True):
    return recipe_from_dict(
        {
            "name": "tiny_lm",
            "model": {"hf": str(lm_dir), "task": "causal-lm"},
            "data": {"name": "text", "kwargs": TINY_TEXT} if data else None,
            "stages": stages,
        }
    )


def _cli(argv):
    from slimtorch.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def test_gptq_recipe_records_perplexity_size_and_time_and_its_folder_reloads(lm_dir, tmp_path):
    res = run_recipe(_recipe(lm_dir, [{"type": "gptq", "grid": G32}]), tmp_path / "run", verbose=False)
    first, last = res.records
    assert [first["name"], last["name"]] == ["initial", "gptq"]
    assert first["kind"] == last["kind"] == "causal-lm" and first["macs"] is None and last["latency"] == {}
    assert last["perplexity_eval"]["windows"] == 4 and last["perplexity_eval"]["window"] == 32
    assert last["calib_seconds"] > 0 and res.info["gptq"]["calib_tokens"] == 4 * 32
    # the size is the saved file of packed codes: far below the float32 model
    assert last["artifact"].endswith("01_gptq/model") and last["size_bytes"] < 0.5 * first["size_bytes"]
    final = res.out_dir / "model"
    assert (final / "slimtorch_quant.json").is_file() and (final / "tokenizer.json").is_file()
    assert not (res.out_dir / "01_gptq" / "calibration").exists()  # checkpoints gone once the model is saved
    report = (res.out_dir / "report.md").read_text()
    assert "| perplexity |" in report and "calib s" in report and "not measured for language models" in report
    results = json.loads((res.out_dir / "results.json").read_text())
    assert results["text"]["disjoint"] and results["text"]["calib_tokens"] == 128
    # reloads with integer codes, and `slimtorch eval RUN` reproduces the recorded perplexity
    model = load_quantized_lm(final)
    assert sum(isinstance(m, QuantLinear) for m in model.modules()) == 14  # 7 Linears x 2 blocks, lm_head float
    rc, out, _ = _cli(["eval", str(res.out_dir), *EVAL_ARGS])
    assert rc == 0 and json.loads(out)["perplexity"] == pytest.approx(last["perplexity"], rel=1e-6)


@pytest.mark.parametrize(
    "kind, fields",
    [
        ("gptq", {"grid": G32, "calib_windows": 2}),
        ("awq", {"grid": G32, "n_grid": 2, "clip_search": False}),
        ("hqq", {"grid": G32}),
        ("rtn_weight_only", {"grid": {**G32, "symmetric": True}}),
        ("wanda", {"sparsity": 0.5}),
        ("sparsegpt", {"pattern": "2:4"}),
        ("magnitude_lm", {"sparsity": 0.5}),
    ],
)
def test_every_lm_stage_compresses_in_place_and_saves(kind, fields, lm_dir, text, tmp_path):
    from slimtorch.lm import load_lm_folder
    from slimtorch.measure.lm import linear_stats

    spec = STAGES.get(kind)
    ctx = Context(
        model=load_lm_folder(lm_dir),
        train_data=None,
        test_data=None,
        out_dir=tmp_path,
        example_input=text.calibration[:1],
        text=text,
        stage_index=1,
        stage_name=kind,
        verbose=False,
    )
    spec.fn(ctx, spec.config_cls.from_dict(fields))
    info = ctx.info[kind]
    assert info["calib_seconds"] >= 0 and info["config"]
    saved = load_quantized_lm(ctx.artifacts[kind])
    with torch.no_grad():
        assert torch.allclose(saved(text.calibration[:1]).logits, ctx.model(text.calibration[:1]).logits, atol=1e-5)
    stats = linear_stats(ctx.model)
    if kind in ("wanda", "sparsegpt", "magnitude_lm"):
        assert stats["decoder_sparsity"] == pytest.approx(0.5, abs=1e-3)
    else:
        assert stats["quantized_linears"] == 14
    if kind == "gptq":
        assert info["calib_windows"] == 2


def test_a_killed_calibration_resumes_after_its_last_block_and_a_finished_stage_reloads(
    lm_dir, text, tmp_path, monkeypatch
):
    import slimtorch.quantize.gptq as gptq
    from slimtorch.lm import load_lm_folder

    spec = STAGES.get("gptq")
    cfg = spec.config_cls.from_dict({"grid": G32})

    def ctx_(resume):
        return Context(
            model=load_lm_folder(lm_dir),
            train_data=None,
            test_data=None,
            out_dir=tmp_path,
            example_input=text.calibration[:1],
            text=text,
            stage_index=1,
            stage_name="gptq",
            resume=resume,
            verbose=False,
        )

    real, calls = gptq.quantize_block, []

    def dies_in_block_1(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed while calibrating the second block
        return real(*a, **k)

    monkeypatch.setattr(gptq, "quantize_block", dies_in_block_1)
    with pytest.raises(KeyboardInterrupt):
        spec.fn(ctx_(False), cfg)
    assert json.loads((tmp_path / "01_gptq" / "calibration" / "progress.json").read_text())["done"] == 0
    monkeypatch.setattr(gptq, "quantize_block", real)
    resumed = ctx_(True)
    spec.fn(resumed, cfg)
    assert resumed.info["gptq"]["resumed_after_block"] == 0
    fresh = ctx_(False)
    fresh.out_dir = tmp_path / "fresh"
    spec.fn(fresh, cfg)
    x = text.calibration[:2]
    with torch.no_grad():
        assert torch.equal(resumed.model(x).logits, fresh.model(x).logits)
    again = ctx_(True)  # the stage finished: a resumed run reloads its folder instead of calibrating
    spec.fn(again, cfg)
    assert again.info["gptq"]["reloaded"].endswith("01_gptq/model")
    with torch.no_grad():
        # (reloaded with transformers' default attention kernel: equal up to float rounding)
        assert torch.allclose(again.model(x).logits, fresh.model(x).logits, atol=1e-5)


def test_lm_stages_and_text_data_refuse_what_they_cannot_use(lm_dir, tmp_path):
    with pytest.raises(ConfigError, match="compresses causal language models"):
        run_recipe(
            recipe_from_dict(
                {
                    "name": "x",
                    "model": {"name": "mlp_784_128_10"},
                    "data": {"name": "synthetic", "test_subset": 8},
                    "stages": [{"type": "gptq"}],
                }
            ),
            tmp_path / "a",
            verbose=False,
        )
    with pytest.raises(ConfigError, match="for causal language models"):
        run_recipe(
            recipe_from_dict(
                {"name": "x", "model": {"name": "mlp_784_128_10"}, "data": {"name": "text"}, "stages": []}
            ),
            tmp_path / "b",
            verbose=False,
        )
    with pytest.raises(ConfigError, match="needs calibration text"):
        run_recipe(_recipe(lm_dir, [{"type": "wanda"}], data=False), tmp_path / "c", verbose=False)
    with pytest.raises(ConfigError, match="stages\\[0\\].*sparsity"):
        _recipe(lm_dir, [{"type": "wanda", "sparsity": 1.0}])
    with pytest.raises(ConfigError, match="data.kwargs.stride"):
        recipe_from_dict(
            {"name": "x", "model": {"name": "lenet5"}, "data": {"name": "text", "kwargs": {"window": 16, "stride": 32}}}
        )


def test_generate_prints_text_and_tokens_per_second(lm_dir, tmp_path):
    rc, out, err = _cli(
        ["generate", str(lm_dir), "--prompt", "Hello", "--max-new-tokens", "6", "--json", str(tmp_path / "g.json")]
    )
    assert rc == 0 and out.startswith("Hello")
    assert "tokens/s" in err and "greedy" in err
    g = json.loads((tmp_path / "g.json").read_text())
    assert g["new_tokens"] == 6 and g["prompt_tokens"] == 5 and g["tokens_per_s"] > 0
    rc, out2, err = _cli(
        [
            "generate",
            str(lm_dir),
            "--prompt",
            "Hello",
            "--max-new-tokens",
            "6",
            "--temperature",
            "0.9",
            "--top-p",
            "0.8",
            "--seed",
            "3",
        ]
    )
    assert rc == 0 and "sampling T=0.9 top-p=0.8" in err
