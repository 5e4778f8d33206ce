"""Distillation composed with pruning and quantization.

* Pruned fine-tuning with KD from the unpruned model: the dense network's soft
  outputs recover accuracy lost to pruning faster than hard labels alone (used
  e.g. by Sanh et al., 2020, "Movement pruning", and Mishra & Marr, 2018,
  "Apprentice").
* QAT with a float teacher: the fake-quantized student matches the float
  model's distribution (Mishra & Marr, 2018; Polino et al., 2018, "Model
  compression via distillation and quantization").

slimtorch's weight transforms are ``torch.nn.utils.parametrize`` parametrizations
(masks, fake quantization) and users also bring ``torch.nn.utils.prune`` models.
Both keep the original dense float weight (``parametrizations.<w>.original`` /
``<w>_orig``), which is how :func:`dense_copy` recovers "the model before
compression". Fine-tuning trains ``original`` through the mask, so masks stay
applied throughout.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils import prune as torch_prune
from torch.utils.data import Dataset

from slimtorch.distill.config import DistillConfig
from slimtorch.distill.transform import distill
from slimtorch.io.fold import is_transformed
from slimtorch.train import Callback


def _deepcopy_pruned(model: nn.Module) -> nn.Module:
    """``copy.deepcopy`` that also works on ``torch.nn.utils.prune`` models.

    Their masked weight is a non-leaf tensor attribute (``weight_orig * weight_mask``),
    which deepcopy refuses; swap in detached values for the copy, then put them back.
    """
    saved = []
    for m in model.modules():
        for hook in m._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                name = hook._tensor_name
                saved.append((m, name, getattr(m, name)))
                setattr(m, name, getattr(m, name).detach())
    try:
        return copy.deepcopy(model)
    finally:
        for m, name, value in saved:
            setattr(m, name, value)


def dense_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every parametrization and torch pruning hook removed, *keeping the originals*.

    For a freshly pruned or fake-quantized model this is the dense float model it
    came from. (After fine-tuning, ``original`` has been trained too, so take the
    copy before fine-tuning, as :func:`finetune_pruned_with_kd` does.)
    """
    out = _deepcopy_pruned(model)
    for module in out.modules():
        if parametrize.is_parametrized(module):
            # deepcopy shares the dynamically created ``Parametrized<Cls>`` class with the
            # original, and removal deletes the weight property from that class, which would
            # break the original model; give the copy its own class first
            cls = module.__class__
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=False)
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                name = hook._tensor_name
                orig = getattr(module, name + "_orig")
                del module._parameters[name + "_orig"]
                del module._buffers[name + "_mask"]
                delattr(module, name)  # the masked plain attribute set by the hook
                module.register_parameter(name, orig)
                del module._forward_pre_hooks[key]
    return out


def is_compressed(model: nn.Module) -> bool:
    """Whether ``model`` carries parametrizations or torch pruning hooks."""
    return is_transformed(model)


def _check_order(fn: str, config: object, train_data: object) -> None:
    """The old order, ``fn(model, train_data, config)``, passes the data where the config goes now."""
    configs = (DistillConfig, dict, type(None))
    if not isinstance(config, configs) and isinstance(train_data, configs):
        raise TypeError(
            f"{fn}(model, config, train_data, ...): the config comes second, as in every verb "
            f"(fn(model, config, *data)); this call passes a {type(config).__name__} there, the old order "
            f"{fn}(model, train_data, config). Write {fn}(model, config, train_data) (config=None for the defaults)"
        )


def finetune_pruned_with_kd(
    pruned: nn.Module,
    config: DistillConfig | dict | None,
    train_data: Dataset,
    teacher: nn.Module | None = None,
    eval_data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """Fine-tune a pruned model with KD from its unpruned self; masks stay applied.

    Args:
        pruned: a model with pruning masks (parametrizations or ``torch.nn.utils.prune``),
            or a structurally pruned (smaller) model when ``teacher`` is given.
        teacher: the model before pruning; default :func:`dense_copy` of ``pruned``.
        config / eval_data / callbacks / checkpoint_dir / resume / verbose / inplace: as :func:`distill`.

    Returns:
        The fine-tuned copy of ``pruned`` (``pruned`` itself when ``inplace``); its zeros are still zero.
    """
    _check_order("finetune_pruned_with_kd", config, train_data)
    if teacher is None:
        if not is_compressed(pruned):
            raise ValueError(
                "finetune_pruned_with_kd: the model carries no pruning masks to undo; pass teacher= "
                "(e.g. the model before structured pruning)"
            )
        teacher = dense_copy(pruned)
    return distill(
        pruned,
        config,
        teacher,
        train_data,
        eval_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        verbose=verbose,
        inplace=inplace,
    )


def qat_with_teacher(
    qat_model: nn.Module,
    config: DistillConfig | dict | None,
    train_data: Dataset,
    teacher: nn.Module | None = None,
    eval_data: Dataset | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    inplace: bool = False,
) -> nn.Module:
    """Quantization-aware training with a float teacher.

    Args:
        qat_model: a model prepared for QAT (fake-quant parametrizations or modules);
            gradients flow through the straight-through estimator as in plain QAT.
        teacher: the float model; default :func:`dense_copy` of ``qat_model`` (works when
            fake quantization is a parametrization; pass it explicitly otherwise).
        callbacks: QAT schedules (observer freezing, batch-norm folding) go here.
        inplace: train ``qat_model`` itself instead of a deep copy (as :func:`distill`).

    Returns:
        The trained copy of ``qat_model`` (``qat_model`` itself when ``inplace``), still fake-quantized.
    """
    _check_order("qat_with_teacher", config, train_data)
    if teacher is None:
        if not is_compressed(qat_model):
            raise ValueError("qat_with_teacher: no parametrizations to undo; pass teacher= (the float model)")
        teacher = dense_copy(qat_model)
    return distill(
        qat_model,
        config,
        teacher,
        train_data,
        eval_data,
        callbacks=callbacks,
        checkpoint_dir=checkpoint_dir,
        resume=resume,
        verbose=verbose,
        inplace=inplace,
    )
