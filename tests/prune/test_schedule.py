"""AGP (Zhu & Gupta 2017) and iterative (Han et al. 2015) schedules."""

from __future__ import annotations

import pytest
import torch

from slimtorch.core.errors import ConfigError
from slimtorch.prune import (
    AGPCallback,
    AGPConfig,
    PruneConfig,
    agp_sparsity,
    prune_iterative,
    retrain_config,
    total_sparsity,
)
from slimtorch.prune.mask import get_mask
from slimtorch.prune.schedule import iterative_progress
from slimtorch.train import ScheduleConfig, TrainConfig, fit
from tests.prune.prune_helpers import make, vector_data

LINEARS = ["encoder.0", "mix", "head"]


@pytest.mark.parametrize(("si", "sf", "t0", "n", "dt"), [(0.0, 0.9, 0, 10, 5), (0.2, 0.8, 30, 4, 25)])
def test_agp_values_match_zhu_gupta_formula(si, sf, t0, n, dt):
    end = t0 + n * dt
    for k in range(n + 1):
        t = t0 + k * dt
        expected = sf + (si - sf) * (1 - (t - t0) / (n * dt)) ** 3
        assert agp_sparsity(t, sf, si, t0, end, dt) == pytest.approx(expected)
        if k < n:  # held constant between updates
            assert agp_sparsity(t + dt - 1, sf, si, t0, end, dt) == pytest.approx(expected)
    assert agp_sparsity(t0 - 1, sf, si, t0, end, dt) == 0.0
    assert agp_sparsity(end + 100, sf, si, t0, end, dt) == sf


def agp_train(model, epochs=4, ckpt=None, resume=False, agp=None):
    cb = AGPCallback(
        model, PruneConfig(sparsity=0.8, protect=False), agp or AGPConfig(begin_epoch=0, end_epoch=2, frequency=4)
    )
    cfg = TrainConfig(epochs=epochs, batch_size=16, schedule=ScheduleConfig(name="constant"))
    fit(model, vector_data(), cfg, callbacks=[cb], checkpoint_dir=ckpt, resume=resume, verbose=False)
    return cb


def test_agp_callback_follows_the_schedule_and_reaches_target():
    model = make()
    cb = agp_train(model)
    steps_per_epoch = 128 // 16
    end = 2 * steps_per_epoch
    assert [h["step"] for h in cb.history] == [0, 4, 8, 12, 16]
    for h in cb.history:
        assert h["target"] == pytest.approx(agp_sparsity(h["step"], 0.8, 0.0, 0, end, 4))
    assert [h["weight_sparsity"] for h in cb.history] == sorted(h["weight_sparsity"] for h in cb.history)
    for f in LINEARS:
        w = model.get_submodule(f).weight
        assert int((w == 0).sum()) == round(0.8 * w.numel())


def test_agp_resume_matches_uninterrupted_run(tmp_path):
    full = make()
    agp_train(full, epochs=4)
    part = make()
    agp_train(part, epochs=2, ckpt=tmp_path)  # "crash" after epoch 2 ...
    resumed = make()  # ... and a fresh process resumes from the checkpoint
    agp_train(resumed, epochs=4, ckpt=tmp_path, resume=True)
    x = torch.randn(5, 16)
    assert torch.equal(full(x), resumed(x))
    for f in LINEARS:
        assert torch.equal(get_mask(full.get_submodule(f)).mask, get_mask(resumed.get_submodule(f)).mask)


def test_agp_end_after_training_is_refused():
    with pytest.raises(ConfigError, match="end_epoch"):
        agp_train(make(), epochs=1, agp=AGPConfig(end_epoch=3))


def test_iterative_progress_from_steps():
    cfg = PruneConfig(sparsity=0.9, protect=False)
    assert iterative_progress(cfg, [0.5, 0.8]) == pytest.approx([0.5 / 0.9, 0.8 / 0.9, 1.0])
    assert iterative_progress(cfg, 2) == pytest.approx([1 - 0.5**3, 1.0])
    with pytest.raises(ConfigError):
        iterative_progress(cfg, [0.5, 0.4])


def test_prune_iterative_reaches_target_with_rising_sparsity():
    model = make()
    log: list = []
    cfg = PruneConfig(sparsity=0.9, per_layer={"head": 0.5}, protect=False)
    ft = TrainConfig(epochs=1, batch_size=32)
    model = prune_iterative(
        model, cfg, vector_data(), ft, steps=[0.3, 0.6], eval_data=vector_data(32, seed=1), verbose=False, log=log
    )
    assert [r["target_sparsity"] for r in log] == pytest.approx([0.3, 0.6, 0.9])
    assert all("accuracy" in r for r in log)
    assert int((model.mix.weight == 0).sum()) == round(0.9 * 1024)
    assert int((model.head.weight == 0).sum()) == round(0.5 * 128)
    assert total_sparsity(model)["weight_sparsity"] > log[0]["weight_sparsity"]


def test_retrain_config_divides_lr():
    base = TrainConfig(epochs=20)
    ft = retrain_config(base, 0.1, epochs=3)
    assert ft.optimizer.lr == pytest.approx(base.optimizer.lr * 0.1) and ft.epochs == 3
