"""A deployed or compressed result that is slower or not smaller says so: one line on screen and in the report."""

from __future__ import annotations

import json

import torch

from slimtorch.deploy.regression import regressions
from slimtorch.pipeline import recipe_from_dict, run_recipe


def test_regressions_name_the_batch_the_fastest_baseline_and_the_size():
    lat = {
        1: {"int8": 2.0, "torch_fp32": 1.0, "ort_fp32": 1.5},
        32: {"int8": 10.0, "torch_fp32": 30.0, "ort_fp32": 20.0},
    }
    msgs = regressions("int8 (onnxruntime)", lat, "int8", ("torch_fp32", "ort_fp32"), 900, 800)
    assert msgs == [
        "int8 (onnxruntime) is slower than fp32 on torch_fp32 at batch 1: 2 ms vs 1 ms (0.50x)",
        "int8 (onnxruntime) is not smaller than fp32: 900 B vs 800 B",
    ]
    assert (
        regressions(
            "int8", {1: {"int8": 1.0, "torch_fp32": 2.0, "ort_fp32": 3.0}}, "int8", ("torch_fp32", "ort_fp32"), 100, 400
        )
        == []
    )


def test_an_unpruned_slim_file_warns_on_screen_and_in_the_report(tmp_path, capsys):
    """Entropy coding 32-bit floats that were neither pruned nor shared cannot make them smaller."""
    torch.manual_seed(0)
    recipe = recipe_from_dict(
        {
            "name": "no_gain",
            "model": {"name": "mlp", "kwargs": {"hidden": [32], "in_features": 784}},
            "data": {"name": "synthetic", "kwargs": {"n_train": 64, "n_test": 32}},
            "measure": {"latency_batches": [1], "latency_runs": 1},
            "stages": [{"type": "encode"}],
        }
    )
    res = run_recipe(recipe, tmp_path / "run", force=True, verbose=True)
    err = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(err) == 1 and ".slim file is not smaller than the dense fp32 tensors" in err[0]
    report = json.loads((res.out_dir / "report.json").read_text())
    assert report["warnings"][0]["stage"] == "encode"
    assert "not smaller" in (res.out_dir / "report.md").read_text()


def test_int8_stage_times_both_fp32_runtimes_and_flags_a_float_gru(tmp_path, capsys):
    from torch.utils.data import TensorDataset

    from slimtorch.deploy.stage import Int8StageConfig, int8_stage
    from slimtorch.pipeline.context import Context
    from tests.deploy.test_recurrent_int8 import GruTagger

    torch.manual_seed(0)
    ids = torch.randint(0, 500, (40, 10))
    data = TensorDataset(ids, torch.zeros(40, dtype=torch.long) - 1)  # unlabelled
    model = GruTagger().eval()
    ctx = Context(
        model=model,
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=ids[:1],
        calib_data=data,
        reference=model,
        stage_index=1,
        stage_name="int8",
        verbose=True,
    )
    cfg = Int8StageConfig(
        mode="dynamic",
        target={"min_agreement": None, "max_kl": None, "min_cosine": 0.99},
        timing_rounds=2,
        timing_batch=8,
    )
    int8_stage(ctx, cfg)
    info = ctx.info["int8"]
    assert set(info["latency_ms"]) == {"b1", "b8"}
    assert set(info["latency_ms"]["b8"]) == {"ort_fp32", "torch_fp32", "int8"}
    assert any("gru[layer 0] stay float" in w for w in info["warnings"])
    assert "gru[layer 0] stay float" in capsys.readouterr().err


def test_structured_stage_times_the_model_before_and_after(tmp_path):
    from slimtorch.data import get_dataset
    from slimtorch.models import create_model
    from slimtorch.pipeline.context import Context
    from slimtorch.prune.structured.stage import (
        PruneChannelsStageConfig,
        prune_channels_stage,
    )

    torch.manual_seed(0)
    _, test = get_dataset("synthetic", n_train=8, n_test=32)
    ctx = Context(
        model=create_model("lenet5"),
        train_data=None,
        test_data=test,
        out_dir=tmp_path,
        example_input=test[0][0][None],
        stage_index=1,
        stage_name="prune_channels",
        verbose=False,
    )
    prune_channels_stage(ctx, PruneChannelsStageConfig.from_dict({"prune": {"ratio": 0.5}}))
    info = ctx.info["prune_channels"]
    assert set(info["latency_ms_b1"]) == {"before", "pruned"} and info["macs_after"] < info["macs_before"]
    slower = info["latency_ms_b1"]["pruned"] >= info["latency_ms_b1"]["before"]
    assert slower == bool(info.get("warnings"))  # a pruned model that is no faster always says so


def test_direct_to_int8_says_when_the_artifact_is_not_smaller(capsys):
    from torch import nn

    from slimtorch.deploy.artifact import Int8Model
    from slimtorch.deploy.convert import float_bytes, warn_not_smaller

    model = nn.Sequential(nn.Linear(64, 64))
    fake = Int8Model.__new__(Int8Model)
    fake.backend, fake.size_bytes, fake.info = "onnxruntime", float_bytes(model) + 1, {}
    msgs = warn_not_smaller(fake, model)
    assert len(msgs) == 1 and "is not smaller than fp32" in msgs[0]
    assert "slimtorch: warning: int8 (onnxruntime) is not smaller" in capsys.readouterr().err
    assert fake.info["warnings"] == msgs
    fake.size_bytes = float_bytes(model) // 3
    assert warn_not_smaller(fake, model) == []
