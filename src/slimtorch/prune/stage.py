"""Recipe stage ``prune``: one-shot, iterative (Han et al. 2015) or AGP (Zhu & Gupta 2017).

Recipe example::

    - type: prune
      prune: {method: magnitude, sparsity: 0.92, per_layer: {fc3: 0.74}}
      schedule: iterative
      steps: 3
      finetune: {epochs: 4, optimizer: {lr: 0.005}}

The stage calls the same functions a Python user calls and leaves the masks on
the model (so later fine-tuning stages keep the sparsity); saving folds them.
"""

from __future__ import annotations

import sys
from typing import Any, Literal

from pydantic import Field, model_validator

from slimtorch.core.config import FrozenConfig
from slimtorch.pipeline.context import Context
from slimtorch.pipeline.registry import register_stage
from slimtorch.prune.config import PruneConfig
from slimtorch.prune.mask import finalize
from slimtorch.prune.prune import protected, prune
from slimtorch.prune.report import sparsity_report, total_sparsity
from slimtorch.prune.schedule import AGPCallback, AGPConfig, prune_iterative
from slimtorch.train import TrainConfig, evaluate, fit


class PruneStageConfig(FrozenConfig):
    """Config of the ``prune`` recipe stage.

    Attributes:
        prune: the (final) pruning target.
        schedule: ``one_shot`` (prune, then optionally fine-tune), ``iterative``
            (``steps`` rounds of prune → ``finetune``) or ``agp`` (gradual pruning
            during one ``finetune`` run, timed by ``agp``).
        steps: rounds (int) or list of sparsities, for ``iterative``.
        finetune: training config (per round for ``iterative``); required for
            ``iterative`` and ``agp``, optional for ``one_shot``.
        agp: AGP timing (begin/end epoch, update frequency).
        finalize: fold the masks into plain weights at the end of the stage
            (later training stages could then revive pruned weights).
        warn_drop: a ``one_shot`` prune that costs more than this much test accuracy
            (before any fine-tuning) prints a warning suggesting a gradual schedule or
            ``slimtorch auto``.
    """

    prune: PruneConfig = PruneConfig()
    schedule: Literal["one_shot", "iterative", "agp"] = "one_shot"
    steps: int | list[float] = 3
    finetune: TrainConfig | None = None
    agp: AGPConfig = AGPConfig()
    finalize: bool = False
    warn_drop: float = Field(0.05, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _needs_finetune(self) -> PruneStageConfig:
        if self.schedule != "one_shot" and self.finetune is None:
            raise ValueError(f"schedule '{self.schedule}' trains while pruning: set 'finetune' (a training config)")
        return self


@register_stage("prune", PruneStageConfig, trains=True)
def prune_stage(ctx: Context, cfg: PruneStageConfig) -> None:
    """Prune ``ctx.model`` by ``cfg`` and record sparsity and accuracy in ``ctx.info``."""
    model, info = ctx.model, {"schedule": cfg.schedule}
    score_data = ctx.calib_data if ctx.calib_data is not None else ctx.train_data
    if ctx.test_data is not None:
        info["accuracy_before"] = evaluate(model, ctx.test_data).accuracy
    caps = protected(model, cfg.prune)
    if caps:
        info["protected"] = {fqn: {"max_sparsity": cap, "reason": why} for fqn, (cap, why) in caps.items()}
        if ctx.verbose and cfg.prune.sparsity > min(cap for cap, _ in caps.values()):
            capped = ", ".join(f"{f} <= {c:.0%} ({w})" for f, (c, w) in caps.items() if c < cfg.prune.sparsity)
            print(
                f"[prune] sensitive layers pruned less: {capped}; per_layer values or protect: false override",
                file=sys.stderr,
                flush=True,
            )
    epochs = 0
    if cfg.schedule == "one_shot":
        model = prune(model, cfg.prune, score_data, inplace=True)  # the stage owns ctx.model: no second copy
        if ctx.test_data is not None:
            info["accuracy_pruned"] = evaluate(model, ctx.test_data).accuracy
            drop = info["accuracy_before"] - info["accuracy_pruned"]
            if drop > cfg.warn_drop:
                msg = (
                    f"one-shot pruning cost {drop * 100:.1f} pp of test accuracy "
                    f"({info['accuracy_before'] * 100:.2f} % -> {info['accuracy_pruned'] * 100:.2f} %) before "
                    "fine-tuning; a gradual schedule (iterative / agp), lower sparsity or `slimtorch auto` "
                    "usually keeps more"
                )
                info["warnings"] = [msg]
                if ctx.verbose:
                    from slimtorch.deploy.regression import warn

                    warn([msg], ctx.stage_name)
        if cfg.finetune is not None:
            fit(
                model,
                ctx.require_train_data(),
                cfg.finetune,
                eval_data=ctx.monitor_data,
                checkpoint_dir=ctx.stage_dir(),
                resume=ctx.resume,
                verbose=ctx.verbose,
            )
            epochs = cfg.finetune.epochs
    elif cfg.schedule == "iterative":
        rounds: list[dict[str, Any]] = []
        model = prune_iterative(
            model,
            cfg.prune,
            ctx.require_train_data(),
            cfg.finetune,
            cfg.steps,
            data=score_data,
            eval_data=ctx.monitor_data,
            checkpoint_dir=ctx.stage_dir(),
            resume=ctx.resume,
            verbose=ctx.verbose,
            log=rounds,
            inplace=True,
        )
        info["rounds"] = rounds
        epochs = cfg.finetune.epochs * len(rounds)
    else:
        cb = AGPCallback(model, cfg.prune, cfg.agp, data=score_data)
        fit(
            model,
            ctx.require_train_data(),
            cfg.finetune,
            eval_data=ctx.monitor_data,
            callbacks=[cb],
            checkpoint_dir=ctx.stage_dir(),
            resume=ctx.resume,
            verbose=ctx.verbose,
        )
        info["agp_updates"] = len(cb.history)
        epochs = cfg.finetune.epochs
    info["finetune_epochs"] = epochs
    info["layers"] = {k: round(v["sparsity"], 6) for k, v in sparsity_report(model).items()}
    info.update(total_sparsity(model))
    if ctx.test_data is not None:
        info["accuracy_after"] = evaluate(model, ctx.test_data).accuracy
    if cfg.finalize:
        model = finalize(model)
    ctx.model = model
    ctx.info[ctx.stage_name] = info
