"""Capturing intermediate features with forward hooks, and the adapters that align them.

FitNets (Romero et al., 2015) regress a thin student's hidden layer onto a wider
teacher layer through a learned regressor. We capture layers by fully qualified
name with forward hooks (so any ``nn.Module`` works, whatever its ``forward``)
and build one adapter per pair: a 1x1 convolution for ``(N, C, H, W)`` maps, a
linear layer for ``(N, C)`` vectors. Adapters are trained jointly with the
student and thrown away afterwards: they exist only to shape the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimtorch.core.errors import ConfigError


class FeatureCapture:
    """Record the outputs of named submodules on every forward pass.

    Use as a context manager; ``captured[fqn]`` holds the latest output. Hooks are
    removed on exit, so the model is left exactly as it was.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], role: str = "model"):
        self.model, self.names, self.role = model, list(dict.fromkeys(names)), role
        self.captured: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> FeatureCapture:
        for name in self.names:
            try:
                module = self.model.get_submodule(name)
            except AttributeError:
                available = [n for n, _ in self.model.named_modules() if n][:20]
                raise ConfigError(
                    f"{self.role} has no layer '{name}'; some available: {', '.join(available)}", field="features"
                ) from None
            self._handles.append(module.register_forward_hook(self._hook(name)))
        return self

    def _hook(self, name: str):
        def hook(_module: nn.Module, _inputs, output) -> None:
            if not isinstance(output, torch.Tensor):
                raise UnsupportedFeatureError(name, output)
            self.captured[name] = output

        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.captured.clear()


class UnsupportedFeatureError(ConfigError):
    def __init__(self, name: str, output: object):
        super().__init__(
            f"layer '{name}' returns {type(output).__name__}, not a tensor; pick a layer whose output is a tensor",
            field="features",
        )


def make_adapter(student_feature: torch.Tensor, teacher_feature: torch.Tensor, name: str) -> nn.Module:
    """An adapter mapping a student feature's channels to the teacher's.

    Args:
        student_feature: ``(N, Cs, H, W)`` or ``(N, Cs)``.
        teacher_feature: ``(N, Ct, H, W)`` or ``(N, Ct)`` (same spatial size).

    Returns:
        ``Conv2d(Cs, Ct, 1)`` or ``Linear(Cs, Ct)``.
    """
    s, t = student_feature.shape, teacher_feature.shape
    if len(s) != len(t) or len(s) not in (2, 4) or (len(s) == 4 and s[2:] != t[2:]):
        raise ConfigError(
            f"feature pair '{name}': cannot adapt student shape {tuple(s[1:])} to teacher shape {tuple(t[1:])}; "
            "pair (C, H, W) maps of the same H, W or (C,) vectors",
            field="features",
        )
    if len(s) == 4:
        return nn.Conv2d(s[1], t[1], kernel_size=1)
    return nn.Linear(s[1], t[1])
