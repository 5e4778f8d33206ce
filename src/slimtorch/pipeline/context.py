"""What recipe stages share: the model being compressed, data, output folder, teacher."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset


@dataclass
class Context:
    """Mutable state handed from stage to stage.

    Attributes:
        model: the model being compressed; stages rebind it (``ctx.model = fn(ctx.model, cfg)``).
        train_data / test_data: labelled datasets (``test_data`` is what accuracy is reported on).
        validation_data: examples held out of the training data (``data.validation_size``);
            training stages monitor it instead of the test set, and every record carries
            its accuracy, so choices between runs are made on it, never on the test set.
        calib_data: unlabelled or labelled inputs for calibration (defaults to a train subset).
        out_dir: the run's output folder; each stage may write under ``out_dir / stage_dir``.
        reference: the model as it was before the first compression stage (for
            fidelity and as a default distillation teacher).
        seed: the recipe seed.
        resume: continue interrupted training stages from their checkpoints.
        artifacts: name → path of files the stages wrote (the last model file, ``.slim``…).
        info: free-form per-stage results (stage name → dict) that go into report.json.
        text: for a causal language model with ``data: {name: text}``, its calibration
            windows and test tokens (:class:`slimtorch.data.lm_text.LMText`).
    """

    model: nn.Module
    train_data: Dataset | None
    test_data: Dataset | None
    out_dir: Path
    example_input: torch.Tensor
    calib_data: Dataset | None = None
    reference: nn.Module | None = None
    seed: int = 0
    resume: bool = False
    verbose: bool = True
    device: str = "cpu"
    artifacts: dict[str, Path] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    stage_index: int = 0
    stage_name: str = ""
    text: Any = None
    validation_data: Dataset | None = None

    @property
    def monitor_data(self) -> Dataset | None:
        """What training stages evaluate between epochs: the validation split when there is one."""
        return self.validation_data if self.validation_data is not None else self.test_data

    def stage_dir(self) -> Path:
        """This stage's own folder (``NN_name``), created on demand."""
        d = self.out_dir / f"{self.stage_index:02d}_{self.stage_name}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def require_train_data(self) -> Dataset:
        if self.train_data is None:
            raise ValueError(f"stage '{self.stage_name}' needs training data; set 'data' in the recipe")
        return self.train_data
