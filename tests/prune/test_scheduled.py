"""``prune_scheduled``: the one schedule dispatch the ``prune`` stage and ``slimtorch auto`` share."""

from __future__ import annotations

import pytest
import torch

from slimtorch.core.errors import ConfigError
from slimtorch.prune import PruneConfig, PruneScheduleConfig, prune, prune_iterative, prune_scheduled, total_sparsity
from slimtorch.train import ScheduleConfig, TrainConfig
from tests.prune.prune_helpers import make, vector_data

FT = {"epochs": 2, "batch_size": 16, "schedule": ScheduleConfig(name="constant")}
TARGET = PruneConfig(sparsity=0.7, protect=False)


@pytest.mark.parametrize("schedule", ["one_shot", "iterative", "agp"])
def test_every_schedule_reaches_the_target_on_a_copy(schedule):
    model, data = make(), vector_data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = {"prune": TARGET, "schedule": schedule, "steps": 2, "finetune": FT, "agp": {"end_epoch": 1, "frequency": 2}}
    log: dict = {}
    out = prune_scheduled(model, cfg, data, verbose=False, log=log)
    assert out is not model and all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert total_sparsity(out)["weight_sparsity"] == pytest.approx(0.7, abs=0.01)
    assert log["finetune_epochs"] == (4 if schedule == "iterative" else 2)
    assert ("rounds" in log) == (schedule == "iterative") and ("agp_updates" in log) == (schedule == "agp")


def test_iterative_is_prune_iterative():
    data, ft = vector_data(), TrainConfig(**FT)
    a = prune_scheduled(make(), {"prune": TARGET, "schedule": "iterative", "steps": 2, "finetune": ft}, data)
    b = prune_iterative(make(), TARGET, data, ft, 2, verbose=False)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_after_prune_sees_the_pruned_model_and_can_skip_finetuning():
    model, data, seen = make(), vector_data(), []

    def good_enough(m) -> bool:
        seen.append(total_sparsity(m)["weight_sparsity"])
        return False

    log: dict = {}
    out = prune_scheduled(
        model, {"prune": TARGET, "finetune": FT}, data, after_prune=good_enough, log=log, inplace=True
    )
    assert out is model and seen == [pytest.approx(0.7, abs=0.01)] and log["finetune_epochs"] == 0
    ref = prune(make(), TARGET, data)  # skipped fine-tuning: exactly the one-shot pruned model
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in out.state_dict().items())


def test_gradual_schedules_need_finetune():
    with pytest.raises(ConfigError, match="set 'finetune'"):
        PruneScheduleConfig(schedule="agp")
