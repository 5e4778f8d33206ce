"""auto_compress end to end on a tiny user model: budget, saved best, closest fallback, resume."""

from __future__ import annotations

import json

import pytest
import torch

import slimtorch
from slimtorch.auto import AutoConfig, auto_compress, selection_split
from slimtorch.train import TrainConfig, evaluate, fit
from tests.user_models import UserNet

FAST = dict(
    latency_runs=2,
    batch_size=32,
    finetune_lr=0.02,
    sensitivity_samples=128,
    sensitivity_sparsities=(0.5, 0.8, 0.9, 0.95, 0.98),
)


@pytest.fixture(scope="module")
def trained():
    from slimtorch.data import get_dataset

    torch.set_num_threads(1)
    train, test = get_dataset("synthetic", n_train=256, n_test=128)
    torch.manual_seed(0)
    model = UserNet(width=8)
    fit(model, train, TrainConfig(epochs=2, batch_size=32), verbose=False)
    return model, train, test


def test_best_model_on_disk_meets_the_budget(trained, tmp_path):
    model, train, test = trained
    res = auto_compress(
        model, train, test, AutoConfig(max_drop=2.0, max_candidates=4, **FAST), tmp_path / "a", verbose=False
    )
    assert res.met and res.best is not None
    best = json.loads((tmp_path / "a" / "best.json").read_text())
    assert best["met"] is True and best["candidate"]["name"] == res.best["name"]
    _, selection = selection_split(train, AutoConfig())
    assert res.selection_size == len(selection) == round(0.1 * len(train))
    for f in ("best.slim", "best.safetensors"):  # a user model: the file needs the module to load into
        m = slimtorch.load(tmp_path / "a" / f, UserNet(width=8))
        acc = evaluate(m, selection).accuracy  # the budget holds on the selection split it was checked on
        assert 100 * (res.baseline - acc) <= 2.0 + 1e-9
        assert acc == pytest.approx(res.best["accuracy"])
        # and the reported test figure is that of the file on disk, on eval_data
        assert evaluate(m, test).accuracy == pytest.approx(res.test_accuracy)
    assert res.test_baseline == pytest.approx(evaluate(model, test).accuracy)
    assert res.baseline == pytest.approx(evaluate(model, selection).accuracy)
    assert "on the test data" in res.message
    assert (tmp_path / "a" / "best.slim").stat().st_size == res.best["size_bytes"]
    # the chosen model is the smallest of those meeting the budget, and is on the Pareto front
    ok = [c for c in res.candidates if 100 * (res.baseline - c["accuracy"]) <= 2.0 + 1e-9]
    assert res.best["size_bytes"] == min(c["size_bytes"] for c in ok)
    pareto = json.loads((tmp_path / "a" / "pareto.json").read_text())
    assert res.best["name"] in [c["name"] for c in pareto["front"]]
    assert len(pareto["candidates"]) == len(res.candidates)
    html = (tmp_path / "a" / "report.html").read_text()
    assert "Pareto" in html and res.best["name"] + " [chosen]" in html


def test_nothing_meets_the_budget_saves_the_closest_with_a_message(trained, tmp_path, capsys):
    model, train, test = trained
    # 1-bit codebooks everywhere, no fine-tuning and zero tolerated disagreement: every candidate misses
    cfg = AutoConfig(
        max_drop=0.0, metric="agreement", bits=(1,), small_layer_bits=1, finetune="never", max_candidates=3, **FAST
    )
    res = auto_compress(model, train, test, cfg, tmp_path / "n")
    assert all(c["accuracy"] < 1.0 for c in res.candidates)
    assert not res.met and "NO candidate met the budget" in res.message
    assert "NO candidate met the budget" in capsys.readouterr().out
    assert res.best["accuracy"] == max(c["accuracy"] for c in res.candidates)
    best = json.loads((tmp_path / "n" / "best.json").read_text())
    assert best["met"] is False and "closest" in best["message"]
    assert (tmp_path / "n" / "best.slim").is_file() and (tmp_path / "n" / "best.safetensors").is_file()


def test_time_budget_is_respected(trained, tmp_path):
    model, train, test = trained
    budget = 5.0
    # enough fine-tuning that a candidate costs a visible fraction of the budget, and
    # enough bit widths that the whole search would not fit in it
    cfg = AutoConfig(
        max_drop=50.0,
        budget_s=budget,
        bits=tuple(range(16, 0, -1)),
        finetune="always",
        finetune_epochs=3,
        kmeans_epochs=3,
        **FAST,
    )
    # a clock that advances a fixed step per reading: the outcome does not depend on how busy the machine is
    ticks = iter(range(10**6))
    res = auto_compress(model, train, test, cfg, tmp_path / "b", verbose=False, clock=lambda: 0.25 * next(ticks))
    secs = [c["seconds"] for c in res.candidates]
    assert res.stopped == "budget"
    # every candidate after the first started only when the mean cost so far still fitted
    for i, c in enumerate(res.candidates[1:], start=1):
        assert c["started_s"] + sum(secs[:i]) / i <= budget
    # so the search ends within the budget plus one candidate (plus writing the report)
    state = json.loads((tmp_path / "b" / "state.json").read_text())
    assert state["elapsed_s"] <= max(budget, res.candidates[0]["started_s"]) + max(secs) + 3.0


class Interrupt(Exception):
    pass


def test_interrupted_search_resumes_where_it_stopped(trained, tmp_path):
    model, train, test = trained
    cfg = AutoConfig(max_drop=1.0, bits=(6, 4), **FAST)
    full = auto_compress(model, train, test, cfg, tmp_path / "full", verbose=False)
    assert len(full.candidates) >= 4

    out = tmp_path / "r"
    first = auto_compress(model, train, test, cfg.replace(max_candidates=2), out, verbose=False)
    assert first.stopped == "max_candidates" and len(first.candidates) == 2

    seen = []

    def crash_after_one(entry):
        seen.append(entry["name"])
        raise Interrupt  # like a kill after the candidate was saved

    with pytest.raises(Interrupt):
        auto_compress(model, train, test, cfg, out, resume=True, verbose=False, hooks=[crash_after_one])
    saved = json.loads((out / "state.json").read_text())["candidates"]
    assert seen == ["c02"] and [c["name"] for c in saved] == ["c00", "c01", "c02"]

    new = []
    res = auto_compress(model, train, test, cfg, out, resume=True, verbose=False, hooks=[lambda e: new.append(e)])
    # earlier candidates come back from disk untouched (not recomputed); the search continues
    assert res.candidates[:3] == saved
    assert [c["session"] for c in res.candidates[:3]] == [1, 1, 2]
    assert all(c["session"] == 3 for c in new) and len(new) == len(res.candidates) - 3
    # and it is the same search an uninterrupted run does
    assert [c["key"] for c in res.candidates] == [c["key"] for c in full.candidates]
    assert [c["accuracy"] for c in res.candidates] == [c["accuracy"] for c in full.candidates]
    assert res.best["key"] == full.best["key"]


def test_existing_folder_needs_resume_or_force(trained, tmp_path):
    from slimtorch.core import ConfigError

    model, train, test = trained
    cfg = AutoConfig(max_candidates=1, **FAST)
    auto_compress(model, train, test, cfg, tmp_path / "x", verbose=False)
    with pytest.raises(ConfigError, match="--resume"):
        auto_compress(model, train, test, cfg, tmp_path / "x", verbose=False)
    with pytest.raises(ConfigError, match="target"):
        auto_compress(model, train, test, cfg.replace(target="latency"), tmp_path / "x", resume=True, verbose=False)


def test_latency_target_removes_channels_and_keeps_budget(trained, tmp_path):
    model, train, test = trained
    cfg = AutoConfig(
        target="latency",
        max_drop=3.0,
        int8=False,
        channel_ratios=(0.25, 0.5, 0.75),
        round_to=1,
        max_candidates=3,
        **FAST,
    )
    res = auto_compress(model, train, test, cfg, tmp_path / "l", verbose=False)
    ratios = [c["config"]["channel_ratio"] for c in res.candidates]
    assert ratios[0] == 0.5 and all(r > 0 for r in ratios)  # bisection starts mid-ladder
    pruned = [c for c in res.candidates if c["params"] < res.candidates[0]["params"] or c is res.candidates[0]]
    assert pruned and res.candidates[0]["params"] < sum(p.numel() for p in model.parameters())
    if res.met:
        best = slimtorch.load(tmp_path / "l" / "best.slim", UserNet(width=8))
        acc = evaluate(best, selection_split(train, cfg)[1]).accuracy  # checked on the selection split
        assert 100 * (res.baseline - acc) <= 3.0 + 1e-9
        assert evaluate(best, test).accuracy == pytest.approx(res.test_accuracy)


def test_cli_parser_builds_the_config(tmp_path, monkeypatch):
    import argparse

    from slimtorch.auto import cli

    parser = argparse.ArgumentParser()
    cli.add_auto_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "auto",
            "lenet300_100",
            "--data",
            "synthetic",
            "--max-drop",
            "0.2",
            "--target",
            "size",
            "--budget",
            "20m",
            "--bits",
            "6,5",
            "--distill-alpha",
            "0",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    seen = {}

    def fake(model, train, test, cfg, out, force, resume):
        seen.update(cfg=cfg, out=out)
        raise SystemExit(0)

    monkeypatch.setattr("slimtorch.auto.auto_compress", fake)
    with pytest.raises(SystemExit):
        args.fn(args)
    assert seen["cfg"].budget_s == 1200 and seen["cfg"].max_drop == 0.2 and seen["cfg"].bits == (6, 5)
    assert seen["cfg"].distill_alpha == 0.0


@pytest.mark.parametrize("schedule", ["agp", "one_shot", "iterative"])
def test_size_candidate_reaches_its_per_layer_sparsities(trained, tmp_path, schedule):
    from slimtorch.auto.evaluate import evaluate_size
    from slimtorch.io.fold import effective_state_dict

    model, train, test = trained
    # finetune="never" in the config: the candidate's own epochs (a refinement candidate) override it
    cfg = AutoConfig(refine_schedule=schedule, finetune="never", finetune_epochs=1, kmeans_epochs=0, **FAST)
    per_layer = {"block.0": 0.5, "head": 0.8}
    params = {"per_layer": per_layer, "bits": {"stem": 8, "block.0": 8, "head": 8}, "finetune_epochs": 2}
    res = evaluate_size(model, params, train, test, cfg, tmp_path, "c", evaluate(model, test).accuracy)
    assert res.record["steps"]["finetune_epochs"] == 2
    sd = effective_state_dict(res.model)
    for name, target in per_layer.items():
        w = sd[f"{name}.weight"]
        assert float((w == 0).float().mean()) == pytest.approx(target, abs=0.02)
    if schedule == "agp":  # pruned in several steps during fine-tuning, not at once
        assert res.record["steps"]["agp_updates"] > 2
    elif schedule == "iterative":  # one pruning round per fine-tuning epoch
        assert res.record["steps"]["prune_rounds"] == 2
    else:
        assert "agp_updates" not in res.record["steps"] and "prune_rounds" not in res.record["steps"]


def test_fine_tuning_distills_from_the_originals_soft_targets(trained):
    import torch.nn.functional as F

    from slimtorch.auto.evaluate import latency_stages, size_stages
    from slimtorch.distill.transform import teacher_loss

    model, train, _ = trained
    size, lat = {"per_layer": {"block.0": 0.5}, "bits": {"block.0": 6}}, {"channel_ratio": 0.25, "int8": False}

    def kd(cfg):  # the distill setting of every fine-tuning stage of both targets
        stages = size_stages(size, train, cfg, 0.9) + latency_stages(lat, cfg, 0.9)
        return [s["distill"] for s in stages if "finetune" in s]

    assert kd(AutoConfig(distill_alpha=0.0, **FAST)) == [None] * 3  # cross-entropy on the labels
    kds = kd(AutoConfig(distill_alpha=1.0, distill_temperature=2.0, **FAST))
    assert kds == [{"temperature": 2.0, "alpha": 1.0}] * 3
    loss = teacher_loss(model, kds[0])
    x, y = next(iter(torch.utils.data.DataLoader(train, batch_size=32)))
    student = UserNet(width=8)
    with torch.no_grad():
        expected = F.kl_div(F.log_softmax(student(x) / 2, 1), F.softmax(model(x) / 2, 1), reduction="batchmean") * 4
        assert float(loss(student, x, y)) == pytest.approx(float(expected), rel=1e-4)
        # the teacher is a frozen copy: changing the original afterwards does not move the targets
        before = float(loss(student, x, y))
        for p in model.parameters():
            p.add_(1.0)
        after = float(loss(student, x, y))
        for p in model.parameters():
            p.sub_(1.0)
    assert after == pytest.approx(before)


def test_refinement_candidates_get_the_larger_training_set(trained):
    from slimtorch.auto.search import prepare_data

    model, train, test = trained
    screen, refine, sel, _, _ = prepare_data(
        model, train, test, AutoConfig(finetune_samples=64, refine_epochs=3, **FAST)
    )
    assert (len(screen), len(refine), len(sel)) == (64, len(train) - len(sel), round(0.1 * len(train)))
    screen, refine, _, ev, metric = prepare_data(
        model,
        train,
        test,
        AutoConfig(finetune_samples=64, refine_samples=128, refine_epochs=3, metric="agreement", **FAST),
    )
    assert (len(screen), len(refine), metric) == (64, 128, "agreement")
    # agreement: both sets are labelled with the original's predictions
    xs = torch.stack([refine[i][0] for i in range(len(refine))])
    assert torch.equal(torch.stack([refine[i][1] for i in range(len(refine))]), model(xs).argmax(1))
    _, refine, _, _, _ = prepare_data(model, train, test, AutoConfig(finetune_samples=64, **FAST))
    assert len(refine) == 64  # no refinement phase: nothing more is prepared


@pytest.mark.parametrize("clip", [1.0, None])
def test_fine_tuning_clips_gradients_as_configured(trained, tmp_path, monkeypatch, clip):
    from slimtorch.auto.evaluate import evaluate_latency

    model, train, test = trained
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *a, **k):
        seen.append(max_norm)
        return real(params, max_norm, *a, **k)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    cfg = AutoConfig(target="latency", grad_clip=clip, finetune="always", int8=False, round_to=1, **FAST)
    res = evaluate_latency(model, {"channel_ratio": 0.25, "int8": False}, train, test, cfg, tmp_path, "c", 1.0)
    assert res.record["steps"] == {"finetune_epochs": 1}
    assert seen == ([clip] * (len(train) // 32) if clip else [])  # one clip per step, or none


def test_choices_never_see_eval_data(trained, tmp_path, monkeypatch):
    """The selection split is the tail of train_data; eval_data reaches only the final test figures."""
    from slimtorch.auto import evaluate as ev_mod

    model, train, test = trained
    seen = []
    real = ev_mod.evaluate

    def spy(m, data, *a, **k):
        seen.append(len(data))
        return real(m, data, *a, **k)

    monkeypatch.setattr(ev_mod, "evaluate", spy)
    cfg = AutoConfig(max_drop=5.0, max_candidates=2, selection_samples=40, **FAST)
    res = auto_compress(model, train, test, cfg, tmp_path / "s", verbose=False)
    assert res.selection_size == 40
    # every evaluation inside candidates ran on the 40 selection examples; only test_figures used the 128 test ones
    assert seen and seen[-2:] == [len(test), len(test)] and set(seen[:-2]) == {40}
    tr, sel = selection_split(train, cfg)
    assert len(tr) == len(train) - 40 and list(sel.indices) == list(range(len(train) - 40, len(train)))
    with pytest.raises(slimtorch.core.errors.ConfigError, match="selection split"):
        selection_split(train, cfg.replace(selection_samples=len(train)))


def test_size_candidates_are_recipe_stages_run_by_the_recipe_runner(trained, tmp_path, monkeypatch):
    from slimtorch.auto.evaluate import evaluate_size, size_stages
    from slimtorch.pipeline import runner

    model, train, test = trained
    cfg = AutoConfig(prune_schedule="agp", finetune="auto", finetune_epochs=1, kmeans_epochs=1, **FAST)
    params = {"per_layer": {"block.0": 0.5, "head": 0.0}, "bits": {"stem": 8, "block.0": 6, "head": 8}}
    stages = size_stages(params, train, cfg, 0.9)
    assert [s["type"] for s in stages] == ["prune", "kmeans", "encode"]
    assert stages[0]["schedule"] == "agp" and stages[0]["finetune_below"] == stages[1]["finetune_below"] == 0.9
    assert stages[0]["distill"] == stages[1]["distill"] == {"temperature": 4.0, "alpha": 0.7}
    ran = []
    real = runner.run_stages
    monkeypatch.setattr(
        runner, "run_stages", lambda ctx, st, **kw: ran.append([s[1].name for s in st]) or real(ctx, st)
    )
    res = evaluate_size(model, params, train, test, cfg, tmp_path, "c", evaluate(model, test).accuracy)
    assert ran == [["prune", "kmeans", "encode"]]
    assert res.slim == (tmp_path / "candidate.slim").read_bytes()
    assert {"acc_before_finetune", "acc_before_kmeans_finetune"} <= set(res.record["steps"])


def test_latency_candidates_are_recipe_stages_that_compute_what_the_direct_calls_did(trained, tmp_path, monkeypatch):
    """prune_channels → int8 through the runner: the candidate's record (latency aside) is that of the
    public transforms called one after another, as the search composed them before it used stages."""
    import copy

    from slimtorch.auto.evaluate import evaluate_latency, example_input, first, latency_stages
    from slimtorch.deploy import FidelityTarget, OrtInt8Config, evaluate_int8, to_int8
    from slimtorch.distill.transform import teacher_loss
    from slimtorch.pipeline import runner
    from slimtorch.prune.structured import StructuredConfig, prune_channels
    from slimtorch.train import OptimizerConfig, ScheduleConfig

    model, train, ev = trained
    cfg = AutoConfig(target="latency", max_drop=3.0, round_to=1, channel_importance="taylor", finetune="auto", **FAST)
    params = {"channel_ratio": 0.25, "int8": True}
    stages = latency_stages(params, cfg, 1.0)
    assert [s["type"] for s in stages] == ["prune_channels", "int8"]
    assert stages[0]["finetune_below"] == 1.0 and stages[0]["distill"] == {"temperature": 4.0, "alpha": 0.7}
    assert stages[1]["baseline"] is False and stages[1]["selection_from"] == "validation"
    ran = []
    real = runner.run_stages
    monkeypatch.setattr(
        runner, "run_stages", lambda ctx, st, **kw: ran.append([s[1].name for s in st]) or real(ctx, st)
    )
    # a bound of 1.0 (half the drop under a baseline of 1.015): the pruned model is fine-tuned unless perfect
    res = evaluate_latency(model, params, train, ev, cfg, tmp_path / "c", "c", 1.015)
    rec = res.record
    assert ran == [["prune_channels", "int8"]]

    x = example_input(ev)
    scfg = StructuredConfig(ratio=0.25, round_to=1, importance="taylor", compensate=True)
    m = prune_channels(copy.deepcopy(model).eval(), scfg, torch.cat([x, x]), data=first(train, 64))
    before = evaluate(m, ev).accuracy
    ft = TrainConfig(
        epochs=1,
        batch_size=32,
        eval_every=0,
        freeze_bn=True,
        grad_clip=1.0,
        optimizer=OptimizerConfig(name="sgd", lr=0.02, momentum=0.9),
        schedule=ScheduleConfig(name="cosine"),
    )
    fit(m, train, ft, loss_fn=teacher_loss(model, {"temperature": 4.0, "alpha": 0.7}), verbose=False)
    m.eval()
    target = FidelityTarget(min_agreement=0.97, max_kl=None)
    icfg = OrtInt8Config(target=target, threads=torch.get_num_threads(), max_float_layers=4)
    q = to_int8(m, icfg, first(train, 256), check_data=first(ev, 256), out_dir=tmp_path / "direct")
    assert rec["steps"] == {"acc_before_finetune": before, "finetune_epochs": 1}
    got, want = res.model.state_dict(), m.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)  # the same weights, bit for bit
    assert rec["params"] == sum(p.numel() for p in m.parameters())
    assert rec["float_accuracy"] == evaluate(m, ev).accuracy
    assert rec["accuracy"] == evaluate_int8(q, ev).accuracy
    assert rec["int8"] == {k: v for k, v in q.summary().items() if k in ("backend", "float_layers", "size_bytes")}
    assert rec["size_bytes"] == q.size_bytes and rec["latency"]["b1"]["runs"] == FAST["latency_runs"]
