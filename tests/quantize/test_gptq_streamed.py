"""Layer-streamed GPTQ gives the in-memory GPTQ's file, tensor for tensor, on the tiny Llama saved as a folder."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from slimtorch.core.errors import FormatError
from slimtorch.quantize.gptq import quantize_gptq, quantize_gptq_streamed
from slimtorch.quantize.qlinear import QuantLinear, load_quantized_lm, save_quantized_lm
from tests.llm_dirs import tiny_llama_dir
from tests.llm_fixtures import tiny_ids

# group 48 on width 64 / 128: every row ends in a partial group, as SmolLM2's 576 at group 128
CONFIGS = {
    "g48": {"grid": {"bits": 4, "group_size": 48}, "batch_size": 3},
    "w3_lm_head_no_act_order": {
        "grid": {"bits": 3, "group_size": 32},
        "layers": {"exclude": []},
        "act_order": False,
        "true_sequential": False,
    },
}


def _in_memory(lm_dir, config, ids, out):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(lm_dir, dtype=torch.float32).eval()
    return save_quantized_lm(quantize_gptq(model, config, ids, inplace=True), out)


def same_folder(a, b) -> None:
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]), k
    assert json.loads((a / "slimtorch_quant.json").read_text()) == json.loads((b / "slimtorch_quant.json").read_text())


@pytest.mark.parametrize("name", list(CONFIGS))
def test_streamed_equals_in_memory(name, tmp_path):
    lm_dir = tiny_llama_dir(tmp_path / "lm")
    ids = tiny_ids(7, 24, seed=1)
    mem = _in_memory(lm_dir, CONFIGS[name], ids, tmp_path / "mem")
    out = quantize_gptq_streamed(lm_dir, tmp_path / "streamed", CONFIGS[name], ids)
    same_folder(mem, out)
    model = load_quantized_lm(out)
    assert sum(isinstance(m, QuantLinear) for m in model.modules()) == 14 + (name != "g48")  # 7 per block (+ lm_head)
    with torch.no_grad():
        assert torch.equal(model(ids[:2]).logits, load_quantized_lm(mem)(ids[:2]).logits)
    assert (out / "tokenizer.json").is_file() and not list(tmp_path.glob(".streamed.*"))  # work folder removed


def test_killed_calibration_resumes_to_the_same_result(tmp_path, monkeypatch):
    import slimtorch.quantize.gptq as gptq

    lm_dir = tiny_llama_dir(tmp_path / "lm")
    ids = tiny_ids(4, 16, seed=2)
    config = CONFIGS["g48"]
    real = gptq.quantize_block
    calls = []

    def dies_on_second_block(block, *a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(block, *a, **kw)

    monkeypatch.setattr(gptq, "quantize_block", dies_on_second_block)
    with pytest.raises(KeyboardInterrupt):
        quantize_gptq_streamed(lm_dir, tmp_path / "out", config, ids, checkpoint_dir=tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "progress.json").read_text())["done"] == 0
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(gptq, "quantize_block", real)
    with pytest.raises(FormatError, match="other tokens"):
        quantize_gptq_streamed(lm_dir, tmp_path / "out", config, ids[:2], checkpoint_dir=tmp_path / "ckpt")
    seen = []
    monkeypatch.setattr(gptq, "quantize_block", lambda *a, **kw: (seen.append(1), real(*a, **kw)))
    out = quantize_gptq_streamed(lm_dir, tmp_path / "out", config, ids, checkpoint_dir=tmp_path / "ckpt")
    assert len(seen) == 1  # only the second block was calibrated again
    same_folder(_in_memory(lm_dir, config, ids, tmp_path / "mem"), out)
    assert not (tmp_path / "ckpt").exists()


def test_refuses_an_existing_output_and_a_folder_without_safetensors(tmp_path):
    from slimtorch.core.errors import DataNotFoundError

    lm_dir = tiny_llama_dir(tmp_path / "lm")
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="new folder"):
        quantize_gptq_streamed(lm_dir, tmp_path / "taken", None, tiny_ids(2, 8))
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((lm_dir / "config.json").read_text())
    with pytest.raises(DataNotFoundError, match="safetensors"):
        quantize_gptq_streamed(bare, tmp_path / "o", None, tiny_ids(2, 8))


def _stage(lm_dir, out, fields, stage_index=1):
    import slimtorch.pipeline.stages  # noqa: F401  (registers the stages)
    from slimtorch.data.lm_text import lm_text
    from slimtorch.lm import load_lm_folder
    from slimtorch.pipeline.context import Context
    from slimtorch.pipeline.registry import STAGES
    from tests.llm_dirs import TINY_TEXT, byte_tokenizer

    text = lm_text(byte_tokenizer(), TINY_TEXT)
    spec = STAGES.get("gptq")
    ctx = Context(
        model=load_lm_folder(lm_dir),
        train_data=None,
        test_data=None,
        out_dir=out,
        example_input=text.calibration[:1],
        text=text,
        stage_index=stage_index,
        stage_name="gptq",
        verbose=False,
    )
    spec.fn(ctx, spec.config_cls.from_dict(fields))
    return ctx


def test_recipe_stage_stream_option_gives_the_same_model(tmp_path):
    from slimtorch.core.errors import ConfigError

    lm_dir = tiny_llama_dir(tmp_path / "lm")
    fields = {"grid": {"bits": 4, "group_size": 48}, "calib_windows": 2}
    plain = _stage(lm_dir, tmp_path / "plain", fields)
    streamed = _stage(lm_dir, tmp_path / "streamed", {**fields, "stream": True})
    same_folder(plain.artifacts["gptq"], streamed.artifacts["gptq"])
    assert streamed.info["gptq"]["calib_windows"] == 2 and "stream" not in streamed.info["gptq"]["config"]
    assert not (tmp_path / "streamed" / "01_gptq" / "streamed").exists()
    with pytest.raises(ConfigError, match="first stage"):
        _stage(lm_dir, tmp_path / "second", {**fields, "stream": True}, stage_index=2)
