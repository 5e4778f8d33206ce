"""Config of the accuracy-aware compression search (:func:`slimtorch.auto.auto_compress`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from slimtorch.core.config import FrozenConfig

SENSITIVITY_GRID = (0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)


class AutoConfig(FrozenConfig):
    """What "good enough" means and which knobs the search may turn.

    Attributes:
        target: ``size`` (bytes of the entropy-coded ``.slim`` file; knobs: per-layer
            sparsity from pruning sensitivity × k-means bits) or ``latency`` (median batch-1
            latency on this CPU; knobs: structured channel ratio × INT8 deployment).
        max_drop: allowed drop of top-1 accuracy (or of agreement with the original model
            when the data has no labels) in percentage points, checked on the selection split
            (held out of ``train_data``) with the model decoded from its file.
        budget_s: wall-clock budget of the whole search in seconds (None: no limit). A
            candidate is not started if the time it is expected to take (the mean of those
            so far) would overrun it; the first candidate always runs so something is saved.
        max_candidates: stop after this many candidates in total (None: until the search ends).
        metric: ``accuracy`` (labelled data), ``agreement`` (top-1 agreement with the
            original model; no labels needed) or ``auto`` (agreement when the data has no labels).
        seed: seeds fine-tuning shuffles and k-means; the search is deterministic given it.
        bits: k-means bit widths to try (size target), the first is the safe one the
            sparsity search runs at; lower ones are tried afterwards at the best sparsity.
        small_layer_fraction / small_layer_bits: layers holding less than this fraction of
            the prunable weights get ``small_layer_bits`` codebooks (they cost little and are
            often the sensitive ones; Han et al. use 8 bits for LeNet's convolutions).
        sensitivity_sparsities: the per-layer sparsity grid of the sensitivity analysis.
        sensitivity_samples: selection examples used for the sensitivity curves (first N).
        prune_method: unstructured criterion (see :data:`slimtorch.prune.CRITERIA`).
        prune_schedule: ``one_shot`` prunes at once and then fine-tunes; ``iterative``
            prunes in ``finetune_epochs`` rounds with one epoch of fine-tuning after each
            (Han et al. 2015, as the Deep Compression recipes do); ``agp`` prunes
            gradually during the candidate's fine-tuning (Zhu & Gupta 2017: the cubic
            schedule reaches the target at ``agp_end`` of it, the rest recovers). In a trial
            of the LeNet-5 bench (one epoch on 30 k MNIST examples per candidate) AGP lost
            more accuracy than one-shot at the same sparsities: too little training follows
            its last pruning step at that length, hence one-shot by default.
        agp_end: fraction of the fine-tuning after which AGP has reached the target.
        finetune: ``auto`` skips a fine-tuning step whose starting model already
            has less than half the allowed drop, ``always`` / ``never``.
        finetune_epochs / kmeans_epochs: epochs of fine-tuning after pruning / of centroid
            fine-tuning after weight sharing (or after channel removal, latency target).
        finetune_lr / kmeans_lr: their SGD learning rates.
        grad_clip: fine-tuning clips the gradient norm to this (None: no clipping). With
            BatchNorm frozen, channels whose running variance is tiny amplify gradients:
            ImageNet MobileNetV2 starts at a gradient norm of about 75, and one SGD step at
            lr 1e-3 (or eleven at 1e-4) on 168 photo crops left it agreeing with itself on
            0 % (20 %) of the evaluation crops; clipped to 1 it kept 97 %.
        weight_decay: SGD weight decay of every fine-tuning step (Han et al. retrain with
            it; it keeps the surviving weights small, which k-means then shares better).
        distill_alpha / distill_temperature: fine-tune with Hinton's distillation loss
            from the original model (``alpha`` × soft targets at ``temperature`` + the rest
            cross-entropy on the labels); 0 trains on the labels alone. The original is the
            best teacher a compressed copy of it can have, and its soft targets carry more
            than the labels (or, with the agreement metric, than its own top-1 predictions).
            On LeNet-5 / MNIST (35 KB config, 6 rounds of iterative pruning on 60 k images)
            alpha 0.7 kept 99.18 % where labels alone kept 98.93 %.
        freeze_bn: fine-tune with BatchNorm statistics frozen: a search's fine-tuning
            steps see a few hundred or thousand examples, whose batch statistics would
            replace those of the original training set.
        refine_schedule: the pruning schedule of refinement candidates (their longer
            fine-tuning leaves room for iterative pruning).
        refine_epochs: size target: after the cheap search, rungs more aggressive than the
            best one are bisected again with this many pruning fine-tuning epochs (0, or not
            more than ``finetune_epochs``: no refinement).
        finetune_samples: screening candidates train on the first N training examples
            only (None: all).
        refine_lr: the learning rate of refinement candidates' pruning fine-tuning (None:
            ``finetune_lr``); their longer schedule tolerates, and often wants, a lower one.
        refine_samples: refinement candidates train on the first N (None: all): they are
            the few whose result decides the outcome.
        selection_fraction / selection_samples: the selection split, the last
            ``selection_samples`` (else ``selection_fraction`` of the) examples of
            ``train_data`` (:mod:`slimtorch.auto.splits`). Every choice of the search (the
            sensitivity curves, fine-tuning skips, the budget check, the ranking) is made on
            it, and nothing is fine-tuned on it; ``eval_data`` is used once, for the chosen
            model's reported test figure.
        batch_size: fine-tuning batch size.
        channel_ratios: structured pruning ratios to search (latency target).
        round_to: kept channel counts are multiples of this (latency target).
        channel_importance / channel_compensate: how channels are ranked, and whether the
            removed ones' mean contribution is folded into the next layer's bias (see
            :class:`slimtorch.prune.structured.StructuredConfig`); both use the first 64
            training examples. Data-driven ranking with compensation keeps MobileNetV2
            usable where filter norms alone (``l2``) leave nothing for a short fine-tune to save.
        int8: also try INT8 deployment (latency target), on ``int8_backend``.
        latency_runs: timed runs per latency measurement (batch 1).
        threads: intra-op threads for latency (None: current setting).
    """

    target: Literal["size", "latency"] = "size"
    max_drop: float = Field(0.5, ge=0.0, le=100.0)
    budget_s: float | None = Field(None, gt=0)
    max_candidates: int | None = Field(None, ge=1)
    metric: Literal["auto", "accuracy", "agreement"] = "auto"
    seed: int = 0
    bits: tuple[int, ...] = (6, 5, 4)
    small_layer_fraction: float = Field(0.05, ge=0.0, le=1.0)
    small_layer_bits: int = Field(8, ge=1, le=16)
    sensitivity_sparsities: tuple[float, ...] = SENSITIVITY_GRID
    sensitivity_samples: int = Field(2000, ge=1)
    prune_method: str = "magnitude"
    prune_schedule: Literal["one_shot", "iterative", "agp"] = "one_shot"
    refine_schedule: Literal["one_shot", "iterative", "agp"] = "iterative"
    agp_end: float = Field(0.6, gt=0.0, le=1.0)
    finetune: Literal["auto", "always", "never"] = "auto"
    finetune_epochs: int = Field(1, ge=0)
    kmeans_epochs: int = Field(1, ge=0)
    finetune_lr: float = Field(0.01, gt=0)
    kmeans_lr: float = Field(0.001, gt=0)
    grad_clip: float | None = Field(1.0, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    distill_alpha: float = Field(0.7, ge=0.0, le=1.0)
    distill_temperature: float = Field(4.0, gt=0.0)
    freeze_bn: bool = True
    refine_epochs: int = Field(0, ge=0)
    finetune_samples: int | None = Field(None, ge=1)
    refine_samples: int | None = Field(None, ge=1)
    refine_lr: float | None = Field(None, gt=0)
    selection_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    selection_samples: int | None = Field(None, ge=1)
    batch_size: int = Field(128, ge=1)
    channel_ratios: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
    round_to: int = Field(8, ge=1)
    channel_importance: Literal["l1", "l2", "bn", "taylor", "activation"] = "activation"
    channel_compensate: bool = True
    int8: bool = True
    int8_backend: str = "onnxruntime"
    latency_runs: int = Field(20, ge=1)
    threads: int | None = Field(None, ge=1)

    @field_validator("bits")
    @classmethod
    def _bits(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 1 <= b <= 16 for b in v):
            raise ValueError(f"bits must be a non-empty list of k-means bit widths in 1..16, got {list(v)}")
        return tuple(dict.fromkeys(v))  # keep order, drop repeats

    @field_validator("sensitivity_sparsities", "channel_ratios")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0.0 < s < 1.0 for s in v):
            raise ValueError(f"values must be fractions in (0, 1), got {list(v)}")
        return tuple(sorted(set(v)))


def parse_budget(text: str | float | int | None) -> float | None:
    """``"20m"``, ``"90s"``, ``"1.5h"``, ``"300"`` (seconds) → seconds; None/"" → None."""
    from slimtorch.core.errors import ConfigError

    if text is None or text == "":
        return None
    if isinstance(text, int | float):
        return float(text)
    s = str(text).strip().lower()
    unit = {"s": 1, "m": 60, "h": 3600}.get(s[-1:], None)
    try:
        value = float(s[:-1] if unit else s) * (unit or 1)
    except ValueError:
        raise ConfigError(f"invalid budget {text!r}: use seconds or a number with s/m/h, e.g. 20m", "budget") from None
    if value <= 0:
        raise ConfigError(f"invalid budget {text!r}: must be positive", "budget")
    return value
