"""The recipe-stage protocol: the stage registry, the context a stage receives, typed stage results.

It lives in ``core`` (not in :mod:`slimtorch.pipeline`, the orchestrator that runs
recipes) so a technique package registers its stage next to its transform without
importing the runner: ``prune``, ``quantize``, ``deploy`` … depend on ``core``, and
``pipeline`` and ``auto`` depend on them, never the other way round.

A stage is ``fn(ctx: Context, cfg: Config) -> None``: it receives its config
validated by the config class it registered with, calls the same public transform
a Python user calls, rebinds ``ctx.model`` and records one frozen
:class:`StageResult` with :meth:`Context.record`. Code reads the typed result
(``ctx.results["prune"].accuracy_after``); ``ctx.info`` holds the same result as
the plain dict that goes into ``results.json`` and the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn
from torch.utils.data import Dataset

from slimtorch.core.config import FrozenConfig
from slimtorch.core.registry import Registry

C = TypeVar("C", bound=FrozenConfig)

_OMIT = "slimtorch_omit_none"  # field metadata: leave the key out of to_dict() while the value is None
_FLATTEN = "slimtorch_flatten"  # field metadata: merge this dict's keys into to_dict() (open-ended summaries)
_LIVE = "slimtorch_live"  # field metadata: an in-memory object for the code that runs next, never in to_dict()


def optional() -> Any:
    """A result field that is recorded only when set (``None``: the key is absent from the JSON).

    For figures a stage measures only sometimes (test accuracy when the recipe has test data,
    ``warnings`` when something regressed), so the JSON keeps the keys it always had.
    """
    return field(default=None, metadata={_OMIT: True})


def flattened(*, required: bool = False) -> Any:
    """A field (a ``dict`` or a dataclass) whose keys appear at the top level of :meth:`StageResult.to_dict`.

    ``None`` adds nothing: a group of keys recorded together or not at all (e.g. a fine-tuning run's).
    """
    if required:
        return field(metadata={_FLATTEN: True})
    return field(default=None, metadata={_FLATTEN: True})


def live() -> Any:
    """A result field holding what the stage made in memory (e.g. the INT8 runtime), never written to JSON.

    ``results.json`` holds what a stage measured; code that runs stages in the same process
    (``slimtorch auto`` measuring a candidate the way it measures every other) reads the object.
    """
    return field(default=None, repr=False, compare=False, metadata={_LIVE: True})


def _to_dict(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        if f.metadata.get(_LIVE):
            continue
        value = getattr(obj, f.name)
        if f.metadata.get(_OMIT) and value is None:
            continue
        if f.metadata.get(_FLATTEN):
            if value is not None:
                out.update(_to_dict(value) if dataclasses.is_dataclass(value) else value)
            continue
        out[f.name] = _to_dict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
    return out


@dataclass(frozen=True, kw_only=True)
class StageResult:
    """Base of every stage's result: a frozen dataclass whose fields are what the stage measured.

    :meth:`to_dict` is the JSON form (``results.json`` → ``stages``). A stage with nothing
    to report records a bare ``StageResult()``.
    """

    def to_dict(self) -> dict[str, Any]:
        """``dataclasses.asdict``, less the :func:`optional` fields left unset and the :func:`live` ones,
        :func:`flattened` ones merged."""
        return _to_dict(self)


R = TypeVar("R", bound=StageResult)


@dataclass(frozen=True, kw_only=True)
class Deployed:
    """A stage that deployed the model to a runtime (``int8``): the figures of that artifact.

    The runner reports them in the stage's row instead of the unchanged float module timed
    in eager PyTorch. A stage result carries it as its ``deployed`` field.
    """

    runtime: str
    latency_b1_ms: float
    agreement: float | None = optional()
    accuracy: float | None = optional()


@dataclass(frozen=True, kw_only=True)
class DeployedLM:
    """A language model exported to a runtime (``onnx_lm``): its file and what that runtime measured."""

    export_seconds: float
    config: dict[str, Any]
    runtime: str
    size_bytes: int
    artifact: str
    perplexity: float | None = optional()
    nll: float | None = optional()
    perplexity_eval: dict[str, Any] | None = optional()
    speed: dict[str, Any] | None = optional()


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
        results: stage name → that stage's typed :class:`StageResult` (see :meth:`record`).
        info: stage name → the same result as a plain dict (what goes into ``results.json``;
            the runner adds ``seconds``). Written by :meth:`record`; read ``results`` in code.
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
    results: dict[str, StageResult] = field(default_factory=dict)

    @property
    def monitor_data(self) -> Dataset | None:
        """What training stages evaluate between epochs: the validation split when there is one."""
        return self.validation_data if self.validation_data is not None else self.test_data

    @property
    def score_data(self) -> Dataset | None:
        """What data-driven scoring (pruning importance, calibration) reads: calibration data, else training data."""
        return self.calib_data if self.calib_data is not None else self.train_data

    def stage_dir(self) -> Path:
        """This stage's own folder (``NN_name``), created on demand."""
        d = self.out_dir / f"{self.stage_index:02d}_{self.stage_name}"
        d.mkdir(parents=True, exist_ok=True)
        return d

    def require_train_data(self) -> Dataset:
        if self.train_data is None:
            raise ValueError(f"stage '{self.stage_name}' needs training data; set 'data' in the recipe")
        return self.train_data

    def require_reference(self, why: str) -> nn.Module:
        """The model before compression (``reference``), or a ConfigError saying that ``why`` needs one."""
        if self.reference is None:
            from slimtorch.core.errors import ConfigError

            raise ConfigError(
                f"stage '{self.stage_name}': {why} needs the model before compression, and there is none "
                "yet (put it after a compression stage)",
                field=self.stage_name,
            )
        return self.reference

    def record(self, result: R) -> R:
        """Record the current stage's result (typed in ``results``, as a dict in ``info``)."""
        self.results[self.stage_name] = result
        self.info[self.stage_name] = result.to_dict()
        return result

    def result(self, name: str, kind: type[R]) -> R | None:
        """Stage ``name``'s result if it is a ``kind`` (``None`` otherwise: another stage type, or none)."""
        res = self.results.get(name)
        return res if isinstance(res, kind) else None


@dataclass(frozen=True)
class StageSpec:
    name: str
    config_cls: type[FrozenConfig]
    fn: Callable[[Context, FrozenConfig], None]
    trains: bool = False  # whether it runs training (and so supports resume)


STAGES: Registry[StageSpec] = Registry("stage type")


def register_stage(name: str, config_cls: type[FrozenConfig], trains: bool = False):
    """Decorator registering ``fn(ctx, cfg)`` as recipe stage ``name`` with config ``config_cls``.

    Registering a stage is one line next to the transform it exposes; recipes can only
    name registered stages (a recipe is data, never an import path).
    """

    def deco(fn: Callable[[Context, FrozenConfig], None]):
        STAGES.register(name, StageSpec(name, config_cls, fn, trains))
        return fn

    return deco


def base_config(cfg: FrozenConfig, cls: type[C]) -> C:
    """The method's own config inside a stage config that extends it (the stage's extra fields dropped).

    A stage config is usually ``class XStageConfig(XConfig)`` plus stage-only fields
    (``finetune``, ``calib_examples``…); the public function takes the plain ``XConfig``.
    """
    return cls.from_dict({k: v for k, v in cfg.to_dict().items() if k in cls.model_fields})
