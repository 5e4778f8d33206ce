"""Evaluating one candidate: transform a copy of the model, fine-tune briefly, encode, decode, measure.

Size target (Deep Compression, Han, Mao & Dally 2016): prune to the candidate's
per-layer sparsities → fine-tune → k-means weight sharing → fine-tune the centroids
→ entropy-code to ``.slim`` → decode the file and measure *that* model, so the
accuracy checked against the budget is the accuracy of what is shipped.

Latency target: structured channel removal → fine-tune → (optionally) INT8 on a
deployment backend; latency is measured on the artifact that would be deployed.

Both run as recipe stages through the recipe runner (:func:`size_stages`,
:func:`latency_stages`, :func:`run_candidate`): a schedule, a fine-tuning gate or a
conversion fixed in a stage behaves the same in a recipe and in a search. What the
search ranks (size, accuracy and latency on the selection split) is then measured here,
alike for every candidate.
"""

from __future__ import annotations

import copy
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from slimtorch.auto.config import AutoConfig
from slimtorch.measure import measure, measure_latency
from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, predict


@dataclass
class Evaluated:
    """A candidate's measurements (``record``: JSON-able) and the artifacts worth keeping if it wins."""

    record: dict[str, Any]
    model: nn.Module  # the decoded / deployable float model
    slim: bytes
    onnx: Path | None = None


def has_labels(data: Dataset) -> bool:
    item = data[0]
    return isinstance(item, tuple | list) and len(item) >= 2 and torch.is_tensor(item[1]) and item[1].ndim == 0


def pseudo_labelled(model: nn.Module, data: Dataset, batch_size: int = 256) -> TensorDataset:
    """``data``'s inputs labelled with ``model``'s top-1 predictions, so accuracy on it = agreement."""
    xs = torch.cat([b[0] if isinstance(b, tuple | list) else b for b in DataLoader(data, batch_size=batch_size)])
    return TensorDataset(xs, predict(model, TensorDataset(xs), batch_size).argmax(1))


def first(data: Dataset, n: int | None) -> Dataset:
    return data if n is None or n >= len(data) else Subset(data, range(n))


def example_input(data: Dataset) -> torch.Tensor:
    item = data[0]
    x = item[0] if isinstance(item, tuple | list) else item
    return x.unsqueeze(0)


def _train_config(cfg: AutoConfig, epochs: int, lr: float) -> TrainConfig:
    return TrainConfig(
        epochs=epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        eval_every=0,
        freeze_bn=cfg.freeze_bn,
        grad_clip=cfg.grad_clip,
        optimizer=OptimizerConfig(name="sgd", lr=lr, momentum=0.9, weight_decay=cfg.weight_decay),
        schedule=ScheduleConfig(name="cosine"),
    )


def _distill(cfg: AutoConfig) -> dict[str, float] | None:
    """The KD settings of the fine-tuning (Hinton KD from the original), or None (cross-entropy)."""
    return {"temperature": cfg.distill_temperature, "alpha": cfg.distill_alpha} if cfg.distill_alpha > 0 else None


def _record(model: nn.Module, x: torch.Tensor, name: str, artifact: Path, cfg: AutoConfig) -> dict[str, Any]:
    rec = measure(
        model, x, name=name, artifact=artifact, latency_batches=(1,), threads=cfg.threads, latency_runs=cfg.latency_runs
    )
    return rec.to_dict(layers=False)


def size_stages(params: dict[str, Any], train: Dataset, cfg: AutoConfig, bound: float) -> list[dict[str, Any]]:
    """A size candidate as recipe stages: ``prune`` (on the configured schedule) → ``kmeans`` → ``encode``.

    Fine-tuning distills from the original (``distill``) and, with ``finetune="auto"``, is
    skipped when the model already keeps half the allowed drop (``finetune_below``): it
    would not pay.
    """
    from slimtorch.prune import PruneConfig
    from slimtorch.quantize import KMeansConfig

    kd, below = _distill(cfg), (bound if cfg.finetune == "auto" else None)
    stages: list[dict[str, Any]] = []
    per_layer = params["per_layer"]
    if any(s > 0 for s in per_layer.values()):
        pcfg = PruneConfig(method=cfg.prune_method, sparsity=0.0, per_layer=per_layer, seed=cfg.seed)
        trains = cfg.finetune != "never" and cfg.finetune_epochs > 0
        prune: dict[str, Any] = {"type": "prune", "prune": pcfg.to_dict(), "distill": kd}
        schedule = cfg.prune_schedule if trains else "one_shot"
        if schedule == "agp":
            steps_per_epoch = -(-len(train) // cfg.batch_size)
            end = cfg.finetune_epochs * cfg.agp_end
            # about ten mask updates: enough for the cubic curve, few enough that each is followed by training
            agp = {"end_epoch": end, "frequency": max(1, round(end * steps_per_epoch / 10))}
            ft = _train_config(cfg, cfg.finetune_epochs, cfg.finetune_lr)
            prune.update(schedule="agp", finetune=ft.to_dict(), agp=agp, finetune_below=below)
        elif schedule == "iterative":
            # Han et al.: one epoch of fine-tuning after each of finetune_epochs pruning rounds (cubic targets)
            ft = _train_config(cfg, 1, cfg.finetune_lr)
            prune.update(schedule="iterative", finetune=ft.to_dict(), steps=cfg.finetune_epochs)
        elif trains:
            ft = _train_config(cfg, cfg.finetune_epochs, cfg.finetune_lr)
            prune.update(finetune=ft.to_dict(), finetune_below=below)
        stages.append(prune)
    bits = params["bits"]
    kmeans = {
        "type": "kmeans",
        **KMeansConfig(
            bits=max(bits.values()),
            per_layer=bits,
            seed=cfg.seed,
            layers={"include": [glob.escape(n) for n in bits]},
        ).to_dict(),
    }
    if cfg.finetune != "never" and cfg.kmeans_epochs > 0:
        ft = _train_config(cfg, cfg.kmeans_epochs, cfg.kmeans_lr)
        kmeans.update(finetune=ft.to_dict(), distill=kd, finetune_below=below)
    return [*stages, kmeans, {"type": "encode", "filename": "candidate.slim"}]


def _steps(results: dict[str, Any]) -> dict[str, Any]:
    """The candidate record's ``steps``: what its fine-tuning did (skipped, epochs, AGP updates, rounds)."""
    info: dict[str, Any] = {}
    prune, kmeans = results.get("prune"), results["kmeans"]
    if prune is not None:
        if prune.accuracy_before_finetune is not None:
            info["acc_before_finetune"] = prune.accuracy_before_finetune
        if prune.finetune_skipped:
            info["finetune_skipped"] = True
        if prune.finetune_epochs:
            info["finetune_epochs"] = prune.finetune_epochs
        if prune.agp_updates is not None:
            info["agp_updates"] = prune.agp_updates
        if prune.rounds is not None:
            info["prune_rounds"] = len(prune.rounds)
    if kmeans.accuracy_before_finetune is not None:
        info["acc_before_kmeans_finetune"] = kmeans.accuracy_before_finetune
    if kmeans.finetune_skipped:
        info["kmeans_finetune_skipped"] = True
    if kmeans.finetune is not None:
        info["kmeans_finetune_epochs"] = len(kmeans.finetune.history)
    return info


def run_candidate(model: nn.Module, stages: list[dict[str, Any]], train: Dataset, ev: Dataset, work: Path):
    """Run ``stages`` on a copy of ``model`` through the recipe runner; the stage context afterwards.

    The original is the reference (distillation teacher, decoding template); ``ev`` (the
    selection split) is the validation data every fine-tuning decision is made on; there is
    no test data here.
    """
    from slimtorch.core.stages import Context
    from slimtorch.pipeline.recipe import stage_list
    from slimtorch.pipeline.runner import run_stages

    ctx = Context(
        model=copy.deepcopy(model),
        train_data=train,
        test_data=None,
        validation_data=ev,
        out_dir=work,
        example_input=example_input(ev),
        reference=model,
        verbose=False,
    )
    return run_stages(ctx, stage_list(stages))


def evaluate_size(
    model: nn.Module,
    params: dict[str, Any],
    train: Dataset,
    ev: Dataset,
    cfg: AutoConfig,
    work: Path,
    name: str,
    baseline: float,
) -> Evaluated:
    """Prune → fine-tune → k-means → centroid fine-tune → ``.slim`` → decoded model measured.

    The steps are recipe stages (:func:`size_stages`) run by the recipe runner.
    """
    half = baseline - cfg.max_drop / 200  # within half the budget: fine-tuning would not pay
    if "finetune_epochs" in params:  # a refinement candidate: longer fine-tuning, always done
        cfg = cfg.replace(
            finetune_epochs=params["finetune_epochs"],
            finetune="always",
            prune_schedule=cfg.refine_schedule,
            finetune_lr=cfg.refine_lr or cfg.finetune_lr,
        )
    ctx = run_candidate(model, size_stages(params, train, cfg, half), train, ev, work)
    decoded, slim_path = ctx.model, work / "candidate.slim"
    rec = _record(decoded, example_input(ev), name, slim_path, cfg)
    res = evaluate(decoded, ev)
    rec.update(accuracy=res.accuracy, loss=res.loss, steps=_steps(ctx.results))
    return Evaluated(rec, decoded, slim_path.read_bytes())


def latency_stages(params: dict[str, Any], cfg: AutoConfig, bound: float) -> list[dict[str, Any]]:
    """A latency candidate as recipe stages: ``prune_channels`` (if any ratio) → ``int8`` (if asked).

    Channels are ranked (and compensated) on the first 64 training examples. Fine-tuning
    distills from the original (``distill``) and, with ``finetune="auto"``, is skipped when the
    pruned model already keeps half the allowed drop (``finetune_below``), as in
    :func:`size_stages`. The INT8 fallback is checked on the selection split
    (``selection_from: validation``) and no fp32 baseline is exported or timed
    (``baseline: false``): the search times every candidate alike afterwards.
    """
    from slimtorch.deploy import FidelityTarget, Int8Config, OrtInt8Config
    from slimtorch.prune.structured import StructuredConfig

    stages: list[dict[str, Any]] = []
    if params["channel_ratio"] > 0:
        scfg = StructuredConfig(
            ratio=params["channel_ratio"],
            round_to=cfg.round_to,
            seed=cfg.seed,
            importance=cfg.channel_importance,
            compensate=cfg.channel_compensate,
            calib_batches=1,  # one batch of 64: the first 64 training examples
        )
        prune: dict[str, Any] = {"type": "prune_channels", "prune": scfg.to_dict()}
        if cfg.finetune != "never" and cfg.finetune_epochs > 0:
            ft = _train_config(cfg, cfg.finetune_epochs, cfg.finetune_lr)
            below = bound if cfg.finetune == "auto" else None
            prune.update(finetune=ft.to_dict(), distill=_distill(cfg), finetune_below=below)
        stages.append(prune)
    if params["int8"]:
        target = FidelityTarget(min_agreement=max(0.0, 1 - cfg.max_drop / 100), max_kl=None)
        icfg = Int8Config(backend=cfg.int8_backend, target=target, threads=cfg.threads or torch.get_num_threads())
        if isinstance(icfg, OrtInt8Config):  # the fallback budget is an ONNX Runtime setting
            icfg = icfg.replace(max_float_layers=4)
        stages.append(
            {
                "type": "int8",
                **icfg.to_dict(),
                "calib_examples": 256,
                "selection_from": "validation",
                "selection_examples": 256,
                "baseline": False,
                "timing_batch": 1,
            }
        )
    return stages


def _latency_steps(results: dict[str, Any], cfg: AutoConfig) -> dict[str, Any]:
    """The candidate record's ``steps``: whether the pruned model was fine-tuned, and for how long."""
    info: dict[str, Any] = {}
    prune = results.get("prune_channels")
    if prune is None:
        return info
    if prune.accuracy_before_finetune is not None:
        info["acc_before_finetune"] = prune.accuracy_before_finetune
    if prune.finetune_skipped:
        info["finetune_skipped"] = True
    elif prune.rounds:
        info["finetune_epochs"] = cfg.finetune_epochs * len(prune.rounds)
    return info


def evaluate_latency(
    model: nn.Module,
    params: dict[str, Any],
    train: Dataset,
    ev: Dataset,
    cfg: AutoConfig,
    work: Path,
    name: str,
    baseline: float,
) -> Evaluated:
    """Channel removal → fine-tune → optional INT8; latency of what would be deployed.

    The steps are recipe stages (:func:`latency_stages`) run by the recipe runner; the float
    model and the INT8 runtime are then measured as every candidate is.
    """
    from slimtorch.deploy import evaluate_int8
    from slimtorch.deploy.stage import Int8Result
    from slimtorch.encode.model import pack_model

    half = baseline - cfg.max_drop / 200
    ctx = run_candidate(model, latency_stages(params, cfg, half), train, ev, work)
    m, x = ctx.model.eval(), example_input(ev)
    slim_path = work / "candidate.slim"
    data = pack_model(m, slim_path, spec=getattr(m, "slimtorch_spec", None))
    rec = _record(m, x, name, slim_path, cfg)
    rec["accuracy"] = evaluate(m, ev).accuracy
    onnx = None
    int8 = ctx.result("int8", Int8Result)
    if int8 is not None:
        art = int8.int8_model
        rec["float_accuracy"] = rec["accuracy"]
        rec["accuracy"] = evaluate_int8(art, ev).accuracy
        lat = measure_latency(art, x, 1, threads=cfg.threads, runs=cfg.latency_runs)
        rec["latency"] = {"b1": lat.to_dict()}
        rec["int8"] = {k: v for k, v in art.summary().items() if k in ("backend", "float_layers", "size_bytes")}
        if art.size_bytes:
            rec["artifact_bytes"] = rec["size_bytes"] = art.size_bytes
            rec["artifact"] = str(art.path)
        onnx = art.path
    rec["steps"] = _latency_steps(ctx.results, cfg)
    return Evaluated(rec, m, data, onnx)


EVALUATORS = {"size": evaluate_size, "latency": evaluate_latency}


def test_figures(
    out: Path, entry: dict[str, Any], original: nn.Module, test: Dataset, load_model, cfg: AutoConfig
) -> dict[str, Any]:
    """The chosen candidate's and the original's accuracy on the test data (the search's only look at it).

    The candidate is read back from what the search wrote (its ONNX INT8 file, else its
    ``.slim``), so the figure is that of the shipped artifact.
    """
    import slimtorch

    if entry["files"].get("onnx"):
        from slimtorch.export.onnx import ort_session

        sess = ort_session(out / entry["files"]["onnx"], cfg.threads or 1)
        name = sess.get_inputs()[0].name

        def art(x):
            return torch.from_numpy(sess.run(None, {name: x.numpy()})[0])

        from slimtorch.deploy import evaluate_int8

        acc = evaluate_int8(art, test).accuracy
    else:
        acc = evaluate(slimtorch.load(out / entry["files"]["slim"], load_model), test).accuracy
    return {"candidate": entry["name"], "accuracy": acc, "baseline": evaluate(original, test).accuracy, "n": len(test)}
