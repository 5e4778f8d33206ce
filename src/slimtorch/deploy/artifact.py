"""What a backend returns: a runnable INT8 model plus what was done to it."""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from slimtorch.export.onnx import Inputs, as_tuple


@dataclass
class Int8Model:
    """A converted model: call it like the float model (returns a float tensor).

    Attributes:
        backend: the backend name that produced it.
        mode: ``static`` or ``dynamic`` (``fp32``: ``backend="auto"`` found no INT8 variant faster than
            fp32 on ONNX Runtime and kept that).
        runner: inputs tuple → output tensor.
        path: the artifact on disk (an ``.onnx`` file for ONNX Runtime) or None.
        float_layers: layers left in float (by the config's ``layers`` selection or by the fallback).
        info: fidelity on the checked data, sensitivity ranking, options used.

    A model that :func:`~slimtorch.deploy.to_int8` wrote into a temporary folder (no
    ``out_dir``) owns that folder: :meth:`close`, the end of a ``with`` block, or garbage
    collection removes it, so ``path`` is valid while the model is in use. Pass ``out_dir``
    to keep the files.
    """

    backend: str
    mode: str
    runner: Callable[[tuple[torch.Tensor, ...]], torch.Tensor]
    path: Path | None = None
    float_layers: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    size_bytes: int | None = None
    _cleanup: weakref.finalize | None = field(default=None, init=False, repr=False, compare=False)

    def owns_folder(self, folder: Path) -> None:
        """Remove ``folder`` (and everything in it) when this model is closed or garbage-collected."""
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(folder), ignore_errors=True)

    def close(self) -> None:
        """Remove the temporary folder this model owns (nothing when it was written to an ``out_dir``)."""
        if self._cleanup is not None:
            self._cleanup()

    def __enter__(self) -> Int8Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.runner(as_tuple(inputs[0]) if len(inputs) == 1 else tuple(inputs))

    def predict(self, batches: list[tuple[torch.Tensor, ...]]) -> torch.Tensor:
        return torch.cat([self.runner(b) for b in batches])

    def summary(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "mode": self.mode,
            "path": str(self.path) if self.path else None,
            "size_bytes": self.size_bytes,
            "float_layers": list(self.float_layers),
            **self.info,
        }


def reference_outputs(model: torch.nn.Module, batches: list[Inputs]) -> torch.Tensor:
    with torch.inference_mode():
        outs = [model(*as_tuple(b)) for b in batches]
    return torch.cat([o[0] if isinstance(o, (tuple, list)) else o for o in outs]).float()
