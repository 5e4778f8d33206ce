"""The stage options ``slimtorch auto`` builds its candidates with: ``finetune_below`` and ``distill``
(``prune``, ``prune_channels``, ``kmeans``)."""

import pytest
import torch

from slimtorch.core import ConfigError
from slimtorch.core.stages import Context
from slimtorch.data import get_dataset
from slimtorch.pipeline.recipe import stage_list
from slimtorch.pipeline.runner import run_stages
from tests.user_models import UserNet

FT = {"epochs": 1, "batch_size": 32}


@pytest.fixture(scope="module")
def data():
    torch.manual_seed(0)
    return get_dataset("synthetic", n_train=96, n_test=32)


def _ctx(data, tmp_path, validation=True, reference=True):
    train, test = data
    model = UserNet(width=8)
    return Context(
        model=model,
        train_data=train,
        test_data=None,
        validation_data=test if validation else None,
        out_dir=tmp_path,
        example_input=test[0][0][None],
        reference=model if reference else None,
        verbose=False,
    )


def test_finetune_below_skips_finetuning_a_model_already_good_enough(data, tmp_path):
    stages = [
        {"type": "prune_channels", "prune": {"ratio": 0.25, "round_to": 1}, "finetune": FT, "finetune_below": 0.0},
        {"type": "prune", "prune": {"sparsity": 0.5}, "finetune": FT, "finetune_below": 0.0},
        {"type": "prune", "label": "gradual", "prune": {"sparsity": 0.6}, "schedule": "agp", "finetune": FT,
         "finetune_below": 0.0},
        {"type": "kmeans", "bits": 4, "finetune": FT, "finetune_below": 0.0},
    ]  # fmt: skip
    ctx = run_stages(_ctx(data, tmp_path), stage_list(stages))
    for label in ("prune_channels", "prune", "gradual", "kmeans"):
        r = ctx.results[label]
        assert r.finetune_skipped is True and 0.0 <= r.accuracy_before_finetune <= 1.0
    assert ctx.results["prune"].finetune_epochs == 0 and ctx.results["gradual"].agp_updates is None
    assert ctx.results["prune_channels"].rounds[0]["finetuned"] is False
    assert not (tmp_path / "00_prune_channels" / "round0").exists()  # no training, so no checkpoint
    assert ctx.results["kmeans"].finetune is None and "history" not in ctx.info["kmeans"]
    assert "seconds" in ctx.info["kmeans"] and [ctx.stage_index, ctx.stage_name] == [4, "kmeans"]


def test_without_the_gate_the_stages_finetune_and_record_no_check(data, tmp_path):
    stages = [
        {"type": "prune", "prune": {"sparsity": 0.5}, "finetune": FT},
        {"type": "kmeans", "bits": 4, "finetune": FT},
    ]
    ctx = run_stages(_ctx(data, tmp_path), stage_list(stages))
    assert ctx.results["prune"].finetune_epochs == 1 and ctx.results["prune"].finetune_skipped is None
    assert len(ctx.results["kmeans"].finetune.history) == 1
    assert "accuracy_before_finetune" not in ctx.info["prune"] and "finetune_skipped" not in ctx.info["kmeans"]


def test_prune_channels_finetunes_below_the_gate_and_records_the_check(data, tmp_path, monkeypatch):
    from slimtorch.prune.structured import finetune

    fits = []
    real = finetune.fit
    monkeypatch.setattr(finetune, "fit", lambda *a, **k: fits.append(1) or real(*a, **k))
    stage = {"type": "prune_channels", "prune": {"ratio": 0.25, "round_to": 1}, "finetune": FT, "finetune_below": 1.0}
    ctx = run_stages(_ctx(data, tmp_path), stage_list([stage]))
    r = ctx.results["prune_channels"]
    assert fits == [1] and r.finetune_skipped is None and r.accuracy_before_finetune < 1.0
    assert "finetuned" not in r.rounds[0] and "finetune_skipped" not in ctx.info["prune_channels"]
    del stage["finetune_below"]
    ctx = run_stages(_ctx(data, tmp_path / "plain"), stage_list([stage]))
    assert len(fits) == 2 and "accuracy_before_finetune" not in ctx.info["prune_channels"]
    with pytest.raises(ConfigError, match="steps: 1") as exc:
        stage_list([{**stage, "steps": 2, "finetune_below": 0.5}])
    assert "finetune_below" in str(exc.value)


def test_finetune_below_needs_validation_data(data, tmp_path):
    stages = stage_list([{"type": "prune", "prune": {"sparsity": 0.5}, "finetune": FT, "finetune_below": 0.5}])
    with pytest.raises(ConfigError, match="validation data") as exc:
        run_stages(_ctx(data, tmp_path, validation=False), stages)
    assert exc.value.field == "finetune_below"


def test_distill_finetunes_towards_the_reference(data, tmp_path, monkeypatch):
    import slimtorch.distill.transform as transform

    seen = []
    original = transform.teacher_loss

    def spy(teacher, config):
        seen.append((teacher, config.alpha))
        return original(teacher, config)

    monkeypatch.setattr(transform, "teacher_loss", spy)
    kd = {"temperature": 2.0, "alpha": 0.5}
    stages = [
        {"type": "prune", "prune": {"sparsity": 0.5}, "finetune": FT, "distill": kd},
        {"type": "kmeans", "bits": 4, "finetune": FT, "distill": kd},
    ]
    ctx = _ctx(data, tmp_path)
    run_stages(ctx, stage_list(stages))
    assert [(t is ctx.reference, a) for t, a in seen] == [(True, 0.5), (True, 0.5)]
    with pytest.raises(ConfigError, match="model before compression"):
        run_stages(_ctx(data, tmp_path, reference=False), stage_list(stages[:1]))
