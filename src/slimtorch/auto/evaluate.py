"""Evaluating one candidate: transform a copy of the model, fine-tune briefly, encode, decode, measure.

Size target (Deep Compression, Han, Mao & Dally 2016): prune to the candidate's
per-layer sparsities → fine-tune → k-means weight sharing → fine-tune the centroids
→ entropy-code to ``.slim`` → decode the file and measure *that* model, so the
accuracy checked against the budget is the accuracy of what is shipped.

Latency target: structured channel removal → fine-tune → (optionally) INT8 on a
deployment backend; latency is measured on the artifact that would be deployed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from slimtorch.auto.config import AutoConfig
from slimtorch.measure import measure, measure_latency
from slimtorch.train import OptimizerConfig, ScheduleConfig, TrainConfig, evaluate, fit, predict


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


def teacher_loss(original: nn.Module, cfg: AutoConfig) -> Callable[..., torch.Tensor] | None:
    """The fine-tuning loss.

    Hinton KD from a frozen copy of the original (``cfg.distill_alpha`` > 0), else None (cross-entropy).
    """
    if cfg.distill_alpha <= 0:
        return None
    from slimtorch.distill import DistillConfig
    from slimtorch.distill.transform import make_distill_loss

    teacher = copy.deepcopy(original).eval()  # a copy: the caller's model stays trainable and untouched
    teacher.requires_grad_(False)
    return make_distill_loss(teacher, DistillConfig(temperature=cfg.distill_temperature, alpha=cfg.distill_alpha))


def _maybe_finetune(
    model: nn.Module,
    train: Dataset,
    ev: Dataset,
    cfg: AutoConfig,
    epochs: int,
    lr: float,
    bound: float,
    info: dict[str, Any],
    tag: str,
    loss_fn=None,
) -> None:
    """Fine-tune unless ``auto`` finds the model already within half the allowed drop (it would not pay)."""
    if cfg.finetune == "never" or epochs == 0:
        return
    if cfg.finetune == "auto":
        acc = evaluate(model, ev).accuracy
        info[f"acc_before_{tag}"] = acc
        if acc >= bound:
            info[f"{tag}_skipped"] = True
            return
    fit(model, train, _train_config(cfg, epochs, lr), loss_fn=loss_fn, verbose=False)
    info[f"{tag}_epochs"] = epochs


def _record(model: nn.Module, x: torch.Tensor, name: str, artifact: Path, cfg: AutoConfig) -> dict[str, Any]:
    rec = measure(
        model, x, name=name, artifact=artifact, latency_batches=(1,), threads=cfg.threads, latency_runs=cfg.latency_runs
    )
    return rec.to_dict(layers=False)


def _prune_gradually(
    model: nn.Module,
    pcfg,
    train: Dataset,
    ev: Dataset,
    cfg: AutoConfig,
    bound: float,
    info: dict[str, Any],
    loss_fn=None,
) -> nn.Module:
    """AGP pruning to ``pcfg``'s per-layer targets during the candidate's fine-tuning.

    With ``finetune="auto"`` the one-shot pruned model is tried first: if it already keeps
    half the allowed drop, gradual pruning would not pay and that model is used as is.
    """
    from slimtorch.prune import prune
    from slimtorch.prune.schedule import AGPCallback, AGPConfig

    if cfg.finetune == "auto":
        probe = prune(model, pcfg, train)  # a copy: model goes on to the gradual schedule if this is not enough
        acc = evaluate(probe, ev).accuracy
        info["acc_before_finetune"] = acc
        if acc >= bound:
            info["finetune_skipped"] = True
            return probe
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    end = cfg.finetune_epochs * cfg.agp_end
    # about ten mask updates: enough for the cubic curve, few enough that each is followed by training
    frequency = max(1, round(end * steps_per_epoch / 10))
    cb = AGPCallback(model, pcfg, AGPConfig(end_epoch=end, frequency=frequency), data=train)
    fit(
        model,
        train,
        _train_config(cfg, cfg.finetune_epochs, cfg.finetune_lr),
        callbacks=[cb],
        loss_fn=loss_fn,
        verbose=False,
    )
    info.update(finetune_epochs=cfg.finetune_epochs, agp_updates=len(cb.history))
    return model


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
    """Prune → fine-tune → k-means → centroid fine-tune → ``.slim`` → decoded model measured."""
    from slimtorch.encode.model import load_packed, pack_model
    from slimtorch.prune import PruneConfig, prune
    from slimtorch.quantize import KMeansConfig, kmeans_share

    half = baseline - cfg.max_drop / 200  # within half the budget: fine-tuning would not pay
    info: dict[str, Any] = {}
    if "finetune_epochs" in params:  # a refinement candidate: longer fine-tuning, always done
        cfg = cfg.replace(
            finetune_epochs=params["finetune_epochs"],
            finetune="always",
            prune_schedule=cfg.refine_schedule,
            finetune_lr=cfg.refine_lr or cfg.finetune_lr,
        )
    m = copy.deepcopy(model)
    kd = teacher_loss(model, cfg)
    per_layer = params["per_layer"]
    if any(s > 0 for s in per_layer.values()):
        pcfg = PruneConfig(method=cfg.prune_method, sparsity=0.0, per_layer=per_layer, seed=cfg.seed)
        trains = cfg.finetune != "never" and cfg.finetune_epochs > 0
        if cfg.prune_schedule == "agp" and trains:
            m = _prune_gradually(m, pcfg, train, ev, cfg, half, info, kd)
        elif cfg.prune_schedule == "iterative" and trains:
            # Han et al.: one epoch of fine-tuning after each of finetune_epochs pruning rounds (cubic targets)
            from slimtorch.prune import prune_iterative

            m = prune_iterative(
                m,
                pcfg,
                train,
                _train_config(cfg, 1, cfg.finetune_lr),
                steps=cfg.finetune_epochs,
                data=train,
                loss_fn=kd,
                verbose=False,
                inplace=True,
            )
            info.update(finetune_epochs=cfg.finetune_epochs, prune_rounds=cfg.finetune_epochs)
        else:
            m = prune(m, pcfg, train, inplace=True)  # m is already this candidate's copy
            _maybe_finetune(m, train, ev, cfg, cfg.finetune_epochs, cfg.finetune_lr, half, info, "finetune", kd)
    m = kmeans_share(
        m,
        KMeansConfig(
            bits=max(params["bits"].values()), per_layer=params["bits"], seed=cfg.seed, layers=list(params["bits"])
        ),
        inplace=True,
    )
    _maybe_finetune(m, train, ev, cfg, cfg.kmeans_epochs, cfg.kmeans_lr, half, info, "kmeans_finetune", kd)
    slim_path = work / "candidate.slim"
    data = pack_model(m, slim_path, spec=getattr(model, "slimtorch_spec", None))
    decoded = load_packed(data, copy.deepcopy(model) if getattr(model, "slimtorch_spec", None) is None else None)
    rec = _record(decoded, example_input(ev), name, slim_path, cfg)
    res = evaluate(decoded, ev)
    rec.update(accuracy=res.accuracy, loss=res.loss, steps=info)
    return Evaluated(rec, decoded, data)


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
    """Channel removal → fine-tune → optional INT8; latency of what would be deployed."""
    from slimtorch.encode.model import pack_model

    half = baseline - cfg.max_drop / 200
    info: dict[str, Any] = {}
    x = example_input(ev)
    m = copy.deepcopy(model).eval()
    if params["channel_ratio"] > 0:
        from slimtorch.prune.structured import StructuredConfig, prune_channels

        scfg = StructuredConfig(
            ratio=params["channel_ratio"],
            round_to=cfg.round_to,
            seed=cfg.seed,
            importance=cfg.channel_importance,
            compensate=cfg.channel_compensate,
        )
        m = prune_channels(m, scfg, torch.cat([x, x]), data=first(train, 64), inplace=True)
        _maybe_finetune(
            m, train, ev, cfg, cfg.finetune_epochs, cfg.finetune_lr, half, info, "finetune", teacher_loss(model, cfg)
        )
    m.eval()
    slim_path = work / "candidate.slim"
    data = pack_model(m, slim_path, spec=getattr(m, "slimtorch_spec", None))
    rec = _record(m, x, name, slim_path, cfg)
    rec["accuracy"] = evaluate(m, ev).accuracy
    onnx = None
    if params["int8"]:
        from slimtorch.deploy import FidelityTarget, Int8Config, OrtInt8Config, evaluate_int8, to_int8

        target = FidelityTarget(min_agreement=max(0.0, 1 - cfg.max_drop / 100), max_kl=None)
        icfg = Int8Config(backend=cfg.int8_backend, target=target, threads=cfg.threads or torch.get_num_threads())
        if isinstance(icfg, OrtInt8Config):  # the fallback budget is an ONNX Runtime setting
            icfg = icfg.replace(max_float_layers=4)
        art = to_int8(
            m,
            icfg,
            first(train, 256),
            check_data=first(ev, 256),
            out_dir=work / "int8",
        )
        rec["float_accuracy"] = rec["accuracy"]
        rec["accuracy"] = evaluate_int8(art, ev).accuracy
        lat = measure_latency(art, x, 1, threads=cfg.threads, runs=cfg.latency_runs)
        rec["latency"] = {"b1": lat.to_dict()}
        rec["int8"] = {k: v for k, v in art.summary().items() if k in ("backend", "float_layers", "size_bytes")}
        if art.size_bytes:
            rec["artifact_bytes"] = rec["size_bytes"] = art.size_bytes
            rec["artifact"] = str(art.path)
        onnx = art.path
    rec["steps"] = info
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
