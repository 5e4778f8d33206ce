"""Distillation losses on logits and on intermediate features.

* :func:`soft_target_loss` / :func:`kd_loss`: Hinton, Vinyals & Dean, 2015,
  "Distilling the knowledge in a neural network": KL divergence between the
  temperature-softened teacher and student distributions, scaled by ``T^2`` and
  mixed with hard-label cross-entropy. ``alpha`` weights the soft term.
* :func:`logit_mse_loss`: seed 000's objective, MSE between raw logits (Ba &
  Caruana, 2014, "Do deep nets really need to be deep?").
* :func:`hint_loss`: FitNets hints (Romero et al., 2015), MSE between an adapted
  student feature map and the teacher's.

All take batched tensors: logits ``(N, C)``, integer targets ``(N,)``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch.

    Its gradient with respect to the student logits is ``T * (softmax(s/T) - softmax(t/T)) / N``;
    for large ``T`` that tends to ``((s - mean s) - (t - mean t)) / (C N)``, i.e. logit
    matching, which is why the ``T^2`` factor keeps the scale constant across ``T``.
    """
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, log_target=True, reduction="batchmean") * (t * t)


def _mix(
    soft: torch.Tensor, student_logits: torch.Tensor, targets: torch.Tensor | None, alpha: float, label_smoothing: float
) -> torch.Tensor:
    # alpha == 1 never needs labels (pure transfer set); skip CE so unlabeled data works
    if alpha >= 1.0:
        return soft
    if targets is None:
        raise ValueError(f"alpha={alpha} < 1 mixes in hard-label cross-entropy, which needs targets")
    hard = F.cross_entropy(student_logits, targets, label_smoothing=label_smoothing)
    if alpha <= 0.0:
        return hard
    return alpha * soft + (1.0 - alpha) * hard


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None,
    temperature: float = 4.0,
    alpha: float = 0.9,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Hinton's distillation loss: ``alpha * T^2 * KL + (1 - alpha) * CE(student, targets)``."""
    soft = soft_target_loss(student_logits, teacher_logits.detach(), temperature) if alpha > 0 else None
    return _mix(soft, student_logits, targets, alpha, label_smoothing)


def logit_mse_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor | None = None,
    alpha: float = 1.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Seed 000's logit matching: ``alpha * mean((s - t)^2) + (1 - alpha) * CE(student, targets)``."""
    soft = F.mse_loss(student_logits, teacher_logits.detach()) if alpha > 0 else None
    return _mix(soft, student_logits, targets, alpha, label_smoothing)


def hint_loss(adapted_student: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """FitNets hint: mean squared error between adapted student and (detached) teacher features."""
    if adapted_student.shape != teacher_feature.shape:
        raise ValueError(
            f"hint shapes differ after the adapter: student {tuple(adapted_student.shape)} vs "
            f"teacher {tuple(teacher_feature.shape)}; pair layers with the same spatial size"
        )
    return F.mse_loss(adapted_student, teacher_feature.detach())
