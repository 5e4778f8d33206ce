"""Training and evaluation: one deterministic, resumable loop for fit, fine-tune, KD and QAT."""

from slimtorch.train.callbacks import Callback, TrainState
from slimtorch.train.checkpoint import load_checkpoint, save_checkpoint
from slimtorch.train.config import OptimizerConfig, ScheduleConfig, TrainConfig
from slimtorch.train.evaluate import EvalResult, agreement, evaluate, predict
from slimtorch.train.loop import FitResult, LossFn, cross_entropy_loss, fit

__all__ = [
    "Callback",
    "EvalResult",
    "FitResult",
    "LossFn",
    "OptimizerConfig",
    "ScheduleConfig",
    "TrainConfig",
    "TrainState",
    "agreement",
    "cross_entropy_loss",
    "evaluate",
    "fit",
    "load_checkpoint",
    "predict",
    "save_checkpoint",
]
