"""Run a recipe: build the model and data, run each stage, measure after each, write the run folder.

A run folder holds ``recipe.yaml`` (resolved), ``command.json`` (argv, time),
``environment.json``, ``results.json`` (every measurement and stage result),
``report.md`` and the final ``model.safetensors``.

Causal language models (``data: {name: text}``, see :mod:`slimtorch.data.lm_text`)
are measured by perplexity on held-out text instead (:mod:`slimtorch.measure.lm`:
no MACs or latency), and their final model is the folder ``model/`` that
:func:`slimtorch.quantize.qlinear.load_quantized_lm` reloads (integer codes for
quantized layers), not ``model.safetensors``.

Resume: stages are replayed in order. Transforms are deterministic given the
seed, and training stages continue from their per-epoch checkpoints (a finished
stage's checkpoint makes its training a no-op), so a resumed run ends where an
uninterrupted one would.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.data import Subset

import slimtorch.pipeline.stages  # noqa: F401  (registers every stage)
from slimtorch.core.config import FrozenConfig
from slimtorch.core.errors import ConfigError
from slimtorch.core.fileio import atomic_write_json, atomic_write_text, prepare_output_dir
from slimtorch.core.seed import seed_everything, set_threads
from slimtorch.core.stages import Context, Deployed, DeployedLM, StageResult, StageSpec
from slimtorch.io.model_file import load_model, save_model
from slimtorch.measure.env import environment
from slimtorch.measure.record import measure
from slimtorch.measure.table import print_table
from slimtorch.pipeline.recipe import Recipe
from slimtorch.report.build import write_report
from slimtorch.report.weights import weight_summary
from slimtorch.train import distributed as D


@dataclass
class RunResult:
    """A finished run.

    Attributes:
        records: one measurement per point (initial, then after each stage), as in ``results.json``.
        info: stage label → that stage's result as ``results.json`` holds it (plus ``seconds``).
        model: the final model.
        results: stage label → the stage's typed :class:`~slimtorch.core.stages.StageResult`.
    """

    out_dir: Path
    records: list[dict[str, Any]]
    info: dict[str, Any]
    model: torch.nn.Module
    results: dict[str, StageResult] = field(default_factory=dict)

    @property
    def final(self) -> dict[str, Any]:
        return self.records[-1]


def _validation_split(train, n: int | None, seed: int):
    """``(train without the validation examples, validation)``; ``(train, None)`` when ``n`` is None."""
    from slimtorch.data import holdout_split

    return (train, None) if n is None else holdout_split(train, n, seed, field="data.validation_size")


def _head(ds, n: int | None):
    return ds if n is None or n >= len(ds) else Subset(ds, range(n))


def build_model(recipe: Recipe) -> torch.nn.Module:
    """The recipe's model: zoo name, model file, the user's class (imports it) or a Hugging Face directory."""
    from slimtorch.models import create_model
    from slimtorch.models.hf import HFModelSource, build_hf_model
    from slimtorch.models.user import UserModelSource, build_user_model

    src = recipe.model
    if isinstance(src, UserModelSource):
        return build_user_model(src)
    if isinstance(src, HFModelSource):
        return build_hf_model(src)
    if src.path is not None:
        return load_model(src.path)
    return create_model(src.name, **src.kwargs)


def _example_input(model: torch.nn.Module, data, recipe: Recipe) -> torch.Tensor:
    if data is not None and len(data) > 0:
        return data[0][0].unsqueeze(0)
    if getattr(model, "example_input_shape", None) is None:
        raise ConfigError("the recipe has no data and the model declares no example_input_shape", field="data")
    from slimtorch.api import example_input

    return example_input(model)


def run_recipe(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    verbose: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run every stage of ``recipe`` and write the run folder ``out_dir``."""
    stages = recipe.stage_configs()
    distributed = D.init_from_env(recipe.device)
    if not D.is_main():
        # Other ranks run the same stages (their training joins DDP) but write into a
        # private scratch folder and skip measurements: only rank 0 writes the run folder.
        import tempfile

        out_dir, verbose = tempfile.mkdtemp(prefix=f"slimtorch_rank{D.rank()}_"), False
    elif distributed:
        verbose = verbose and D.is_main()
    out = prepare_output_dir(out_dir, force=force, resume=resume)
    atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    atomic_write_json(out / "command.json", {"argv": argv or sys.argv, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    atomic_write_json(out / "environment.json", environment())
    seed_everything(recipe.seed)
    set_threads(recipe.threads)

    train = test = validation = None
    text_data = recipe.data is not None and recipe.data.name == "text"
    if recipe.data is not None and not text_data:
        from slimtorch.data import get_dataset

        train, test = get_dataset(recipe.data.name, **recipe.data.kwargs)
        train, test = _head(train, recipe.data.train_subset), _head(test, recipe.data.test_subset)
        train, validation = _validation_split(train, recipe.data.validation_size, recipe.data.validation_seed)
    model = build_model(recipe)
    lm, text = _language_model(model, recipe)
    ctx = Context(
        model=model,
        train_data=train,
        test_data=test,
        out_dir=out,
        example_input=_lm_example(text) if lm else _example_input(model, test, recipe),
        calib_data=_head(train, recipe.data.calib_size) if train is not None else None,
        seed=recipe.seed,
        device=recipe.device,
        resume=resume,
        verbose=verbose,
        text=text,
        validation_data=validation,
    )
    if text is not None:
        from torch.utils.data import TensorDataset

        ctx.calib_data = TensorDataset(text.calibration)
    ms = recipe.measure
    trained_first = bool(stages) and stages[0][1].name == "train"
    if not trained_first and not lm:  # (a language model's reference copy would double its memory; unused)
        ctx.reference = copy.deepcopy(ctx.model).eval()

    def record(name: str, artifact=None) -> dict[str, Any]:
        if not D.is_main():
            return {"name": name}
        if lm:
            return _record_lm(ctx, name, artifact, lm_base, verbose)
        rec = measure(
            ctx.model,
            ctx.example_input,
            name=name,
            data=ctx.test_data,
            reference=ctx.reference,
            artifact=artifact,
            latency_batches=tuple(ms.latency_batches),
            threads=ms.threads,
            latency_runs=ms.latency_runs,
        ).to_dict()
        rec["weights"] = weight_summary(ctx.model)
        if ctx.validation_data is not None:
            from slimtorch.train import evaluate

            rec["val_accuracy"] = evaluate(ctx.model, ctx.validation_data).accuracy
        _apply_deployed(rec, getattr(ctx.results.get(name), "deployed", None))
        if verbose:
            acc = f"top-1 {rec['accuracy'] * 100:.2f}% " if rec["accuracy"] is not None else ""
            print(f"[measure] {name}: {acc}size {rec['size_bytes']} B", file=sys.stderr, flush=True)
        return rec

    lm_base: list[dict[str, Any]] = []  # a language model's first record (its size is the ratio's base)
    records = [] if trained_first else [record("initial")]
    lm_base[:] = records[:1]

    def after(label: str, spec: StageSpec) -> None:
        if spec.name == "train" and ctx.reference is None:
            ctx.reference = copy.deepcopy(ctx.model).eval()
        records.append(record(label, ctx.artifacts.get(label)))
        atomic_write_json(out / "results.json", _results(recipe, records, ctx))

    run_stages(ctx, stages, after=after, verbose=verbose)

    if not D.is_main():
        return RunResult(out, records, ctx.info, ctx.model, ctx.results)
    if lm:
        final_path = _save_final_lm(ctx, stages[-1][0] if stages else None)
    else:
        final_path = save_model(ctx.model, out / "model.safetensors", metadata={"recipe": recipe.name})
    ctx.artifacts["final"] = final_path
    results = _results(recipe, records, ctx)
    atomic_write_json(out / "results.json", results)
    write_report(out, {**results, "environment": environment()})
    if verbose:
        print_table(records, title=f"{recipe.name} — {out}")
    return RunResult(out, records, ctx.info, ctx.model, ctx.results)


def run_stages(
    ctx: Context,
    stages: list[tuple[str, StageSpec, FrozenConfig]],
    *,
    after: Callable[[str, StageSpec], None] | None = None,
    verbose: bool = False,
) -> Context:
    """Run validated stages (:func:`~slimtorch.pipeline.recipe.stage_list`) in order on ``ctx``.

    The one loop a recipe run and ``slimtorch auto``'s candidates go through: each stage
    gets its index and label (its folder ``NN_label``), its time is recorded (``seconds``),
    and ``after(label, spec)`` runs after it (the recipe runner measures there).
    """
    for i, (label, spec, cfg) in enumerate(stages, start=1):
        ctx.stage_index, ctx.stage_name = i, label
        if verbose:
            print(f"[stage {i}/{len(stages)}] {label} ({spec.name})", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        spec.fn(ctx, cfg)
        if ctx.device != "cpu":
            # stages that train move the model to the recipe's device; measuring, saving and
            # encoding run on the CPU (the deployment target whose latency is reported)
            ctx.model.cpu()
        ctx.info.setdefault(label, {})["seconds"] = time.perf_counter() - t0
        if after is not None:
            after(label, spec)
    return ctx


def _language_model(model: torch.nn.Module, recipe: Recipe):
    """(whether ``model`` is a causal LM, its :class:`~slimtorch.data.lm_text.LMText` for ``data: text``)."""
    from slimtorch.measure.lm import is_causal_lm

    lm = is_causal_lm(model)
    if recipe.data is None or recipe.data.name != "text":
        return lm, None
    if not lm:
        raise ConfigError(
            f"data 'text' is for causal language models; the recipe's model is a "
            f"{type(model).__name__} (use a zoo LM, or model: {{hf: DIR, task: causal-lm}})",
            field="data.name",
        )
    from slimtorch.data.lm_text import lm_text, tokenizer_of

    d = recipe.data
    return lm, lm_text(tokenizer_of(model), d.kwargs, calib_cap=d.calib_size, test_cap=d.test_subset)


def _lm_example(text) -> torch.Tensor:
    return text.calibration[:1].clone() if text is not None else torch.zeros(1, 32, dtype=torch.long)


def _record_lm(ctx: Context, name: str, artifact, base: list[dict[str, Any]], verbose: bool) -> dict[str, Any]:
    from slimtorch.measure.lm import measure_lm

    result = ctx.results.get(name)
    deployed = getattr(result, "deployed_lm", None)
    if not isinstance(deployed, DeployedLM):
        deployed = None
    # a deployed stage (onnx_lm) reports its file, measured by its runtime: no second PyTorch perplexity pass
    rec = measure_lm(
        ctx.model,
        None if deployed else ctx.text,
        name=name,
        artifact=None if deployed else artifact,
        calib_seconds=getattr(result, "calib_seconds", None),
        dense_bytes=base[0]["dense_bytes"] if base else None,
    )
    if deployed:
        rec.update(
            runtime=deployed.runtime,
            artifact=deployed.artifact,
            size_bytes=deployed.size_bytes,
            artifact_bytes=deployed.size_bytes,
            perplexity=deployed.perplexity,
            loss=deployed.nll,
            perplexity_eval=deployed.perplexity_eval,
        )
        if deployed.speed is not None:
            rec["decode_tokens_per_s"] = deployed.speed["decode_tokens_per_s"]
            rec["prefill_ms"] = deployed.speed["prefill_ms"]
    rec["weights"] = {}
    if verbose:
        ppl = f"perplexity {rec['perplexity']:.3f} " if rec["perplexity"] is not None else ""
        print(f"[measure] {name}: {ppl}size {rec['size_bytes']} B", file=sys.stderr, flush=True)
    return rec


def _save_final_lm(ctx: Context, last_label: str | None) -> Path:
    """``out/model/``: the last stage's saved folder (hard links, no second copy) or a fresh save."""
    import os
    import shutil

    from slimtorch.quantize.qlinear import save_quantized_lm

    final = ctx.out_dir / "model"
    if final.exists():  # a resumed run writes it again
        shutil.rmtree(final)
    src = ctx.artifacts.get(last_label) if last_label else None
    if src is not None and Path(src).is_dir() and (Path(src) / "slimtorch_quant.json").is_file():
        tmp = ctx.out_dir / ".model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)

        def link(a, b):
            try:
                os.link(a, b)
            except OSError:
                shutil.copy2(a, b)

        shutil.copytree(src, tmp, copy_function=link)
        os.replace(tmp, final)
        return final
    return save_quantized_lm(ctx.model, final, getattr(ctx.model, "slimtorch_tokenizer", None))


def _apply_deployed(rec: dict[str, Any], deployed: Deployed | None) -> None:
    """A stage that deployed the model to a runtime (``int8``) reports that artifact's latency and fidelity.

    Without this the row would show the unchanged float module timed in eager PyTorch. Any stage
    whose result has a ``deployed`` field (a :class:`~slimtorch.core.stages.Deployed`) is reported so.
    """
    if not isinstance(deployed, Deployed):
        return
    rec["runtime"] = deployed.runtime
    rec["latency"] = {"b1": {"batch_size": 1, "median_ms": deployed.latency_b1_ms, "runtime": deployed.runtime}}
    if deployed.accuracy is not None:
        rec["accuracy"] = deployed.accuracy
    if deployed.agreement is not None:
        rec["agreement"] = deployed.agreement


def _results(recipe: Recipe, records: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    out = {
        "recipe": recipe.name,
        "description": recipe.description,
        "records": records,
        "stages": ctx.info,
        "artifacts": {k: str(v) for k, v in ctx.artifacts.items()},
    }
    if ctx.text is not None:
        out["text"] = ctx.text.info
    return out
