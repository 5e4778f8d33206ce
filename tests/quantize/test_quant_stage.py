import torch

from slimtorch.pipeline.context import Context
from slimtorch.pipeline.registry import STAGES
from slimtorch.quantize import stage  # noqa: F401  (registers the stages)


def _ctx(model, data, tmp_path):
    return Context(
        model=model,
        train_data=data,
        test_data=data,
        out_dir=tmp_path,
        example_input=data.tensors[0][:1],
        verbose=False,
        stage_name="q",
        stage_index=1,
    )


def test_quantize_stage_runs_qat_and_records(tmp_path, mlp, vec_data):
    spec = STAGES.get("quantize")
    cfg = spec.config_cls.from_dict(
        {"weight_bits": 4, "act_bits": 8, "calib_examples": 64, "finetune": {"epochs": 1, "batch_size": 32}}
    )
    ctx = _ctx(mlp, vec_data, tmp_path)
    spec.fn(ctx, cfg)
    info = ctx.info["q"]
    assert ctx.model is not mlp
    assert {"accuracy_before", "accuracy_quantized", "accuracy_finetuned", "layers", "quant_params"} <= set(info)
    assert info["quant_params"]["fc1"]["weight_bits"] == 4
    assert all(torch.unique(r).numel() <= 15 for r in ctx.model.fc1.weight)


def test_kmeans_stage_records_layers(tmp_path, mlp, vec_data):
    spec = STAGES.get("kmeans")
    ctx = _ctx(mlp, vec_data, tmp_path)
    spec.fn(ctx, spec.config_cls.from_dict({"bits": 2, "finetune": {"epochs": 1, "batch_size": 32}}))
    rows = {r["layer"]: r for r in ctx.info["q"]["layers"]}
    assert rows["fc1"]["kind"] == "kmeans" and rows["fc1"]["distinct_values"] <= 4
    assert "accuracy_finetuned" in ctx.info["q"]
