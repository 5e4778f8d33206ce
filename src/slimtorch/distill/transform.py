"""``distill``: train a student to match a frozen teacher, through the ordinary ``fit`` loop.

Distillation is a loss, not a loop: :func:`make_distill_loss` builds the
``loss_fn(model, x, y)`` that :func:`slimtorch.train.fit` calls, so KD inherits
fit's determinism, checkpoints, resume, jitter and callbacks (pruning schedules,
QAT observers). The teacher can be any module, including a pruned
(parametrized) or fake-quantized one: it only runs forward, in eval mode, under
``torch.no_grad``, with its parameters' ``requires_grad`` off; its previous
mode and flags are restored afterwards.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.config import coerce, validate_config
from slimtorch.core.errors import ConfigError
from slimtorch.core.inplace import working_model
from slimtorch.distill.cache import build_teacher_cache, with_indices
from slimtorch.distill.config import DistillConfig
from slimtorch.distill.features import FeatureCapture, make_adapter
from slimtorch.distill.losses import hint_loss, kd_loss, logit_mse_loss
from slimtorch.train import Callback, FitResult, LossFn, fit

CACHE_NAME = "teacher_cache.safetensors"


@contextlib.contextmanager
def frozen_teacher(teacher: nn.Module) -> Iterator[nn.Module]:
    """Put ``teacher`` in eval mode with gradients off; restore every module's mode and flag on exit."""
    modes = {m: m.training for m in teacher.modules()}
    flags = {p: p.requires_grad for p in teacher.parameters()}
    teacher.eval()
    for p in flags:
        p.requires_grad_(False)
    try:
        yield teacher
    finally:
        for m, mode in modes.items():
            m.training = mode
        for p, flag in flags.items():
            p.requires_grad_(flag)


class DistillModule(nn.Module):
    """The student plus its hint adapters, so ``fit``'s optimizer trains both.

    ``forward`` is the student's, so evaluation during ``fit`` measures the student.
    The teacher is deliberately *not* a submodule: it must not be optimized or
    written into training checkpoints.
    """

    def __init__(self, student: nn.Module, adapters: nn.ModuleDict):
        super().__init__()
        self.student = student
        self.adapters = adapters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student(x)


def _probe_input(data: Dataset) -> torch.Tensor:
    x = data[0][0]
    return torch.as_tensor(x).unsqueeze(0)


@torch.no_grad()
def build_adapters(
    student: nn.Module, teacher: nn.Module, config: DistillConfig, sample: torch.Tensor
) -> nn.ModuleDict:
    """One adapter per feature pair, sized from a forward pass of both models on ``sample``."""
    adapters = nn.ModuleDict()
    if not config.features:
        return adapters
    was_training = student.training
    student.eval()  # no batch-norm statistics update from the probe
    try:
        with (
            FeatureCapture(student, [p.student for p in config.features], "student") as s_cap,
            FeatureCapture(teacher, [p.teacher for p in config.features], "teacher") as t_cap,
        ):
            student(sample)
            teacher(sample)
            for i, pair in enumerate(config.features):
                name = f"{pair.student}->{pair.teacher}"
                adapters[f"pair{i}"] = make_adapter(s_cap.captured[pair.student], t_cap.captured[pair.teacher], name)
    finally:
        student.train(was_training)
    return adapters


def make_distill_loss(
    teacher: nn.Module,
    config: DistillConfig,
    student_capture: FeatureCapture | None = None,
    teacher_capture: FeatureCapture | None = None,
    cache: dict[str, torch.Tensor] | None = None,
) -> LossFn:
    """The ``loss_fn(model, x, y)`` for ``fit``: student loss against a frozen teacher.

    Args:
        teacher: already frozen (see :func:`frozen_teacher`).
        config: loss kind, temperature, alpha, feature pairs.
        student_capture / teacher_capture: active hooks on the feature layers (needed
            when ``config.features`` is set; the model passed to the loss must then be a
            :class:`DistillModule` holding the adapters).
        cache: teacher outputs by index (:func:`build_teacher_cache`); the batches then
            come from :func:`with_indices` with targets ``(N, 2)`` = ``[label, index]``.
    """
    pairs = list(config.features)
    if pairs and (student_capture is None or (cache is None and teacher_capture is None)):
        raise ValueError("feature pairs need active student and teacher feature captures")
    label_smoothing = config.train.label_smoothing

    def loss_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        inner = getattr(model, "module", model)  # fit may hand over a DistributedDataParallel wrapper
        if cache is not None:
            y, idx = y[:, 0], y[:, 1]
            t_logits = cache["logits"][idx.cpu()].to(x.device)
            t_feats = {p.teacher: cache[f"feat.{p.teacher}"][idx.cpu()].to(x.device) for p in pairs}
        else:
            with torch.no_grad():
                t_logits = teacher(x)
            t_feats = {p.teacher: teacher_capture.captured[p.teacher] for p in pairs} if pairs else {}
        s_logits = model(x)
        if config.loss == "kl":
            loss = kd_loss(s_logits, t_logits, y, config.temperature, config.alpha, label_smoothing)
        else:
            loss = logit_mse_loss(s_logits, t_logits, y, config.alpha, label_smoothing)
        for i, pair in enumerate(pairs):
            adapted = inner.adapters[f"pair{i}"](student_capture.captured[pair.student])
            loss = loss + pair.weight * hint_loss(adapted, t_feats[pair.teacher])
        return loss

    return loss_fn


def _check_order(fn: str, config: Any) -> None:
    """The old order, ``fn(student, teacher, train_data, config)``, passes a model where the config goes now."""
    if isinstance(config, nn.Module):
        raise TypeError(
            f"{fn}(student, config, teacher, train_data, ...): the config comes second, as in every verb "
            f"(fn(model, config, *data)); this call passes a {type(config).__name__} there, the old order "
            f"{fn}(student, teacher, train_data, config). Write {fn}(student, config, teacher, train_data) "
            "(config=None for the defaults)"
        )


def distill_fit(
    student: nn.Module,
    config: DistillConfig | dict | None,
    teacher: nn.Module,
    train_data: Dataset,
    eval_data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    cache_path: str | os.PathLike | None = None,
    verbose: bool = True,
) -> FitResult:
    """Like :func:`distill` but returns fit's history (the student is trained in place)."""
    _check_order("distill_fit", config)
    config = validate_config(DistillConfig, config, "distill")
    if config.cache_teacher and config.train.jitter:  # configs built with model_construct skip validation
        raise ConfigError("cache_teacher=True cannot be combined with train.jitter > 0", field="cache_teacher")
    if student is teacher:
        raise ValueError("student and teacher are the same object; pass a copy as teacher (copy.deepcopy)")
    with frozen_teacher(teacher), contextlib.ExitStack() as stack:
        adapters = build_adapters(student, teacher, config, _probe_input(train_data))
        model = DistillModule(student, adapters)
        s_cap = t_cap = cache = None
        if config.features:
            s_cap = stack.enter_context(FeatureCapture(student, [p.student for p in config.features], "student"))
        data = train_data
        if config.cache_teacher:
            if cache_path is None:
                folder = checkpoint_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="slimtorch-kd-"))
                cache_path = Path(folder) / CACHE_NAME
            cache = build_teacher_cache(
                teacher, train_data, cache_path, [p.teacher for p in config.features], config.train.eval_batch_size
            )
            data = with_indices(train_data)
        elif config.features:
            t_cap = stack.enter_context(FeatureCapture(teacher, [p.teacher for p in config.features], "teacher"))
        loss_fn = make_distill_loss(teacher, config, s_cap, t_cap, cache)
        return fit(
            model,
            data,
            config.train,
            eval_data=eval_data,
            loss_fn=loss_fn,
            callbacks=callbacks,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            verbose=verbose,
        )


def distill(
    student: nn.Module,
    config: DistillConfig | dict | None,
    teacher: nn.Module,
    train_data: Dataset,
    eval_data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    cache_path: str | os.PathLike | None = None,
    verbose: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """Train a copy of ``student`` to imitate ``teacher`` (Hinton et al., 2015) and return it.

    Args:
        student: any ``nn.Module`` producing logits; left as it is unless ``inplace``.
        config: :class:`DistillConfig` (or its dict; ``None``: Hinton KL, T=4, alpha=0.9). Second, as
            in every verb (``fn(model, config, *data)``).
        teacher: any ``nn.Module`` producing logits of the same shape, possibly pruned
            or fake-quantized; frozen while distilling, its state restored afterwards.
        train_data: map-style dataset of ``(input, label)``; the transfer set.
        eval_data: labelled data evaluated during training (student accuracy).
        callbacks: ``fit`` callbacks, e.g. a pruning schedule. A callback built on the student
            (``AGPCallback(student, ...)``) changes the object it holds: pass ``inplace=True``.
        checkpoint_dir: per-epoch checkpoints (student + adapters) and the teacher cache.
        resume: continue from ``checkpoint_dir``.
        cache_path: where the teacher cache goes (default: ``checkpoint_dir`` or a temp dir).
        verbose: one line per epoch on stderr.
        inplace: train ``student`` itself instead of a deep copy.

    Returns:
        The trained student (``student`` itself when ``inplace``), in eval mode; hint
        adapters are discarded.

    Raises:
        TypeError: a model where the config goes: the order before this version,
            ``distill(student, teacher, train_data, config)``.
    """
    _check_order("distill", config)
    config = validate_config(DistillConfig, config, "distill")  # before the copy: a wrong field costs nothing
    if student is teacher:
        raise ValueError("student and teacher are the same object; pass a copy as teacher (copy.deepcopy)")
    student = working_model(student, inplace)
    distill_fit(
        student,
        config,
        teacher,
        train_data,
        eval_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        cache_path=cache_path,
        verbose=verbose,
    )
    return student


def teacher_loss(teacher: nn.Module, config: DistillConfig | dict | None = None) -> LossFn:
    """A fine-tuning loss distilling from a frozen copy of ``teacher`` (the caller's module is left as it is).

    What a recipe stage's ``distill:`` option and ``slimtorch auto`` fine-tune with: the
    teacher is usually the model before compression, so the loss pulls the compressed
    model back towards its own uncompressed outputs.
    """
    frozen = copy.deepcopy(teacher).eval()
    frozen.requires_grad_(False)
    return make_distill_loss(frozen, coerce(DistillConfig, config, "distill"))
