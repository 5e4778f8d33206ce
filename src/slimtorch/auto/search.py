"""``auto_compress``: the smallest (or fastest) model within an accuracy budget, searched across knobs.

Tuning loops such as Intel Neural Compressor's, NNCF's ``quantize_with_accuracy_control``
and ModelOpt's ``auto_quantize`` each turn one knob. This search turns pruning
(per-layer sparsity from sensitivity, Han et al. 2015), k-means weight sharing
(Han, Mao & Dally 2016), structured channel removal and INT8 deployment together
(see :mod:`slimtorch.auto.space` for the plans), under a wall-clock budget, and never
ends empty-handed: the best model meeting the budget, or the closest one, is always on
disk, as is the Pareto set of everything tried (see :mod:`slimtorch.auto.state`).
"""

from __future__ import annotations

import copy
import os
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.auto import state as st
from slimtorch.auto.config import AutoConfig
from slimtorch.auto.evaluate import EVALUATORS, example_input, first, has_labels, pseudo_labelled
from slimtorch.auto.space import Candidate, latency_plan, size_plan, tolerance_ladder
from slimtorch.auto.splits import selection_split
from slimtorch.core.config import validate_config
from slimtorch.core.fileio import atomic_write_json, prepare_output_dir
from slimtorch.core.progress import task

Hook = Callable[[dict[str, Any]], None]


@dataclass
class AutoResult:
    """Outcome of :func:`auto_compress`.

    Attributes:
        out_dir: the search folder (``best.slim``, ``pareto.json``, ``report.html``…).
        best: the chosen candidate's entry (config, size, accuracy, latency), or None.
        met: whether ``best`` meets the accuracy budget (False: it is the closest one).
        message: one line saying what was chosen and why.
        candidates: every candidate evaluated, in order (including earlier sessions).
        pareto: indices into ``candidates`` of the Pareto front.
        stopped: ``finished``, ``budget`` or ``max_candidates``.
        baseline: the original model's accuracy (or 1.0 for agreement) on the selection split.
        test_accuracy / test_baseline: the chosen model's and the original's accuracy (or
            agreement) on ``eval_data``, measured once, after the choice (None: nothing chosen).
        selection_size: examples in the selection split (the last ones of ``train_data``).
    """

    out_dir: Path
    best: dict[str, Any] | None
    met: bool
    message: str
    candidates: list[dict[str, Any]]
    pareto: list[int]
    stopped: str
    baseline: float
    test_accuracy: float | None = None
    test_baseline: float | None = None
    selection_size: int = 0


def may_start(elapsed: float, durations: Sequence[float], budget: float | None) -> bool:
    """Whether a candidate expected to last the mean of ``durations`` fits in what is left.

    The first candidate always starts: a search that saves nothing is worse than one
    that overruns by one candidate.
    """
    if budget is None or not durations:
        return True
    return elapsed + sum(durations) / len(durations) <= budget


def _fmt_time(s: float) -> str:
    return f"{int(s // 60)}m{int(s % 60):02d}s" if s >= 60 else f"{s:.1f}s"


def _progress(e: dict[str, Any], target: str, baseline: float, ok: bool, left: float | None) -> str:
    k = e["knobs"]
    if target == "size":
        ft = f" ft={k['finetune_epochs']}ep" if "finetune_epochs" in k else ""
        what = f"rung {k['rung']} tol={k['tolerance']:.4f} bits={k['bits']}{ft} | {100 * e['sparsity']:.1f}% pruned"
    else:
        what = f"channels -{100 * k['channel_ratio']:.0f}% int8={'yes' if k['int8'] else 'no'}"
    lat = e["latency"]["b1"]["median_ms"]
    tail = f" | {_fmt_time(left)} left" if left is not None else ""
    return (
        f"[auto] {e['name']} {what} | {e['size_bytes'] / 1024:.1f} KB | {lat:.3f} ms | "
        f"{100 * e['accuracy']:.2f}% ({100 * (e['accuracy'] - baseline):+.2f} pp) "
        f"{'meets' if ok else 'misses'} budget | {e['seconds']:.1f}s{tail}"
    )


def prepare_data(model: nn.Module, train_data: Dataset, eval_data: Dataset, cfg: AutoConfig):
    """Fine-tuning sets (screening, refinement), the selection split (from ``train_data``), the test set, the metric."""
    train_data, selection = selection_split(train_data, cfg)
    metric = cfg.metric
    if metric == "auto":
        metric = "accuracy" if has_labels(eval_data) and has_labels(selection) else "agreement"
    refines = cfg.refine_epochs > cfg.finetune_epochs
    n = len(first(train_data, cfg.finetune_samples))
    if refines:
        n = max(n, len(first(train_data, cfg.refine_samples)))
    train = first(train_data, n)
    if metric == "agreement":
        # accuracy on the original's own predictions is top-1 agreement with it
        train, selection = pseudo_labelled(model, train), pseudo_labelled(model, selection)
        eval_data = pseudo_labelled(model, eval_data)
    screen = first(train, cfg.finetune_samples)
    return screen, first(train, cfg.refine_samples) if refines else screen, selection, eval_data, metric


def _setup(model: nn.Module, train: Dataset, ev: Dataset, cfg: AutoConfig, out: Path) -> dict[str, Any]:
    """Baseline, the original's record and (size target) the sensitivity curves: computed once, stored."""
    from slimtorch.measure import environment, measure
    from slimtorch.prune import sensitivity
    from slimtorch.prune.select import prunable_layers
    from slimtorch.train import evaluate

    baseline = evaluate(model, ev).accuracy
    orig = measure(
        model,
        example_input(ev),
        name="original",
        latency_batches=(1,),
        threads=cfg.threads,
        latency_runs=cfg.latency_runs,
    ).to_dict(layers=False)
    orig["accuracy"] = baseline
    state: dict[str, Any] = {
        "version": st.STATE_VERSION,
        "config": cfg.to_dict(),
        "baseline": baseline,
        "original": orig,
        "environment": environment(),
        "elapsed_s": 0.0,
        "sessions": 0,
        "candidates": [],
        "best": None,
    }
    if cfg.target == "size":
        sub = first(ev, cfg.sensitivity_samples)
        curves = sensitivity(
            model,
            sub,
            (0.0, *cfg.sensitivity_sparsities),
            method=cfg.prune_method,
            data=train if cfg.prune_method in ("taylor", "activation") else None,
        )
        state["sensitivity"] = {k: [list(p) for p in v] for k, v in curves.items()}
        state["layer_weights"] = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    return state


def _plan(state: dict[str, Any], cfg: AutoConfig):
    if cfg.target == "latency":
        return latency_plan(cfg)
    curves = {k: [tuple(p) for p in v] for k, v in state["sensitivity"].items()}
    dense = next(iter(curves.values()))[0][1]  # accuracy of the unpruned model on the sensitivity subset
    return size_plan(tolerance_ladder(curves, dense), state["layer_weights"], cfg)


def _message(entry: dict[str, Any] | None, met: bool, cfg: AutoConfig, baseline: float, metric: str) -> str:
    if entry is None:
        return "no candidate was evaluated"
    what = "size" if cfg.target == "size" else "latency"
    obj = (
        f"{entry['size_bytes'] / 1024:.1f} KB"
        if cfg.target == "size"
        else f"{entry['latency']['b1']['median_ms']:.3f} ms"
    )
    drop = 100 * (baseline - entry["accuracy"])
    if met:
        return (
            f"{entry['name']}: smallest {what} meeting the budget: {obj}, {metric} {100 * entry['accuracy']:.2f}% "
            f"(drop {drop:.2f} pp <= {cfg.max_drop} pp)"
        )
    return (
        f"NO candidate met the budget of {cfg.max_drop} pp; saved the closest, {entry['name']}: {obj}, "
        f"{metric} {100 * entry['accuracy']:.2f}% (drop {drop:.2f} pp). Allow a larger --max-drop, a longer "
        "--budget, or more fine-tuning epochs"
    )


def auto_compress(
    model: nn.Module,
    train_data: Dataset,
    eval_data: Dataset,
    config: AutoConfig | dict | None = None,
    out_dir: str | os.PathLike = "runs/auto",
    *,
    force: bool = False,
    resume: bool = False,
    verbose: bool = True,
    hooks: Sequence[Hook] = (),
    clock: Callable[[], float] = time.monotonic,
) -> AutoResult:
    """Search for the smallest (``target="size"``) or fastest (``"latency"``) model within ``max_drop``.

    Args:
        model: a trained model (left untouched; every candidate transforms a copy).
        train_data: ``(x, y)`` data for the short fine-tuning steps (and INT8 calibration),
            less its last examples, the selection split every choice is made on; labels are
            replaced by the original's predictions when the metric is agreement.
        eval_data: test data (labelled, or inputs only), used once: the chosen model's and the
            original's figures on it are reported (``test_accuracy``); no choice is made on it.
            The budget is checked on the selection split, the last examples of ``train_data``
            (:mod:`slimtorch.auto.splits`).
        config: :class:`AutoConfig` or its dict.
        out_dir: the search folder. It holds ``state.json`` (for ``resume``), ``pareto.json``,
            ``best.slim`` / ``best.safetensors`` / ``best.json``, ``candidates/`` and, at the
            end, ``report.html`` (plus ``.md`` / ``.json``) and ``results.json``.
        force: overwrite an existing folder. resume: continue the search recorded in it
            (candidates already evaluated are not evaluated again).
        hooks: called with each newly evaluated candidate's entry after it is saved
            (an exception raised by a hook stops the search with everything on disk).
        clock: seconds counter used for the budget (tests pass a fake one).

    Returns:
        :class:`AutoResult`.
    """
    cfg = validate_config(AutoConfig, config or {})
    out = prepare_output_dir(out_dir, force=force, resume=resume)
    start = clock()
    train, refine_train, ev, test, metric = prepare_data(model, train_data, eval_data, cfg)
    state = st.load_state(out, cfg.target) if resume else None
    if state is None:
        state = _setup(model, train, ev, cfg, out)
        state["metric"] = metric
    else:
        state["config"] = cfg.to_dict()  # budget, max_drop… may be changed on resume; the plan replays
    prev_elapsed, state["sessions"] = state["elapsed_s"], state["sessions"] + 1
    session = state["sessions"]

    def elapsed() -> float:
        return prev_elapsed + clock() - start

    baseline, target = state["baseline"], cfg.target
    entries: list[dict[str, Any]] = state["candidates"]
    done = {e["key"]: e for e in entries}
    (out / "candidates").mkdir(exist_ok=True)
    work = out / "work"
    load_model = None if getattr(model, "slimtorch_spec", None) else copy.deepcopy(model)
    evaluator = EVALUATORS[target]
    plan, stopped = _plan(state, cfg), "finished"
    state["elapsed_s"] = elapsed()
    st.save_state(out, state)
    cand: Candidate | None = next(plan, None)
    # a bar over the candidates on a terminal (their number is open unless max_candidates is set);
    # the one line per candidate is the plain log
    with (
        task("auto: candidates", cfg.max_candidates, plain=False)
        if verbose
        else nullcontext(lambda n=1: None) as advance
    ):
        advance(len(entries))  # those of earlier sessions (resume)
        while cand is not None:
            entry = done.get(cand.key)
            if entry is None:
                if cfg.max_candidates is not None and len(entries) >= cfg.max_candidates:
                    stopped = "max_candidates"
                    break
                if not may_start(elapsed(), [e["seconds"] for e in entries], cfg.budget_s):
                    stopped = "budget"
                    break
                # refinement candidates (longer fine-tuning) decide the outcome: they get the larger training set
                data = refine_train if "finetune_epochs" in cand.params else train
                entry = _evaluate(
                    model, cand, len(entries), data, ev, cfg, out, work, baseline, evaluator, clock, elapsed()
                )
                entry["session"] = session
                entries.append(entry)
                done[cand.key] = entry
                _after_candidate(out, state, entry, cfg, baseline, metric, load_model, elapsed)
                if verbose:
                    left = cfg.budget_s - elapsed() if cfg.budget_s else None
                    print(_progress(entry, target, baseline, st.meets(entry, baseline, cfg.max_drop), left), flush=True)
                advance()
                for hook in hooks:
                    hook(entry)
            try:
                cand = plan.send(st.meets(entry, baseline, cfg.max_drop))
            except StopIteration:
                cand = None
    shutil.rmtree(work, ignore_errors=True)
    return _finish(out, state, cfg, baseline, metric, stopped, load_model, elapsed, verbose, (model, test, len(ev)))


def _evaluate(
    model,
    cand: Candidate,
    index: int,
    train,
    ev,
    cfg: AutoConfig,
    out: Path,
    work: Path,
    baseline: float,
    evaluator,
    clock,
    started: float,
) -> dict[str, Any]:
    work.mkdir(exist_ok=True)
    t0 = clock()
    torch.manual_seed(cfg.seed)  # each candidate starts from the same RNG state, whatever ran before
    name = f"c{index:02d}"
    res = evaluator(model, cand.params, train, ev, cfg, work, name, baseline)
    rec = res.record
    files = {"slim": f"candidates/{name}.slim"}
    (work / "candidate.slim").replace(out / files["slim"])
    if res.onnx is not None:
        files["onnx"] = f"candidates/{name}.onnx"
        shutil.move(str(res.onnx), out / files["onnx"])
    rec.update(
        started_s=started,
        name=name,
        key=cand.key,
        config=cand.params,
        knobs=cand.knobs,
        files=files,
        artifact=files.get("onnx", files["slim"]),
        seconds=clock() - t0,
        sparsity=1 - rec["nonzero"] / max(1, rec["params"]),
    )
    return rec


def _after_candidate(
    out: Path,
    state: dict[str, Any],
    entry: dict[str, Any],
    cfg: AutoConfig,
    baseline: float,
    metric: str,
    load_model,
    elapsed,
) -> None:
    entries = state["candidates"]
    idx, met = st.choose(entries, cfg.target, baseline, cfg.max_drop)
    if idx is not None and (idx != state["best"] or not (out / "best.slim").is_file()):
        st.promote(out, entries[idx], met, _message(entries[idx], met, cfg, baseline, metric), state, load_model)
        state["best"] = idx
    state["elapsed_s"] = elapsed()
    st.save_pareto(out, state)
    st.save_state(out, state)


def _finish(
    out: Path,
    state: dict[str, Any],
    cfg: AutoConfig,
    baseline: float,
    metric: str,
    stopped: str,
    load_model,
    elapsed,
    verbose: bool,
    testing,
) -> AutoResult:
    from slimtorch.auto.evaluate import test_figures
    from slimtorch.auto.report import write_auto_report

    entries = state["candidates"]
    idx, met = st.choose(entries, cfg.target, baseline, cfg.max_drop)
    best = entries[idx] if idx is not None else None
    message = _message(best, met, cfg, baseline, metric)
    test = None
    if best is not None:
        original, test_data, n_selection = testing
        # the one look at the test data: the chosen model (as written to disk) and the original
        test = test_figures(out, best, original, test_data, load_model, cfg)
        test["selection_size"] = n_selection
        message += (
            f"; on the test data (used once, after the choice): {metric} {100 * test['accuracy']:.2f}% "
            f"(drop {100 * (test['baseline'] - test['accuracy']):.2f} pp)"
        )
    if best is not None and (idx != state["best"] or not (out / "best.slim").is_file()):
        st.promote(out, best, met, message, state, load_model)  # max_drop changed on resume
    state.update(best=idx, stopped=stopped, message=message, elapsed_s=elapsed(), test=test)
    st.save_pareto(out, state)
    st.save_state(out, state)
    if entries:
        write_auto_report(out, state, idx)
    if verbose:
        print(f"[auto] stopped: {stopped} after {len(entries)} candidates, {_fmt_time(state['elapsed_s'])}", flush=True)
        print(f"[auto] {message}", flush=True)
    atomic_write_json(out / "command.json", {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "config": cfg.to_dict()})
    return AutoResult(
        out,
        best,
        met,
        message,
        entries,
        st.front(entries, cfg.target),
        stopped,
        baseline,
        test and test["accuracy"],
        test and test["baseline"],
        testing[2],
    )
