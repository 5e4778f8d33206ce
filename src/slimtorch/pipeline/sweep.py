"""Sweeps: run a recipe once per value of one parameter and plot the trade-off.

Each point is an ordinary run in ``out/point_KK``; the sweep folder gets a
``results.json`` whose records are each point's final measurement, and the
usual report (whose accuracy-vs-size plot is then the sweep's trade-off curve
with its Pareto front).

Under torchrun the points are independent, so they fan out: rank r runs the
points k with ``k % world == r``, each as a single-process run (see
:func:`slimtorch.train.distributed.local_only`) writing only its own
``point_KK`` folder; rank 0 then writes the sweep's own files from every
point's final record.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from slimtorch.core.fileio import atomic_write_json, atomic_write_text, prepare_output_dir
from slimtorch.core.progress import track
from slimtorch.measure.env import environment
from slimtorch.measure.table import print_table
from slimtorch.pipeline.recipe import Recipe, sweep_points
from slimtorch.pipeline.runner import RunResult, run_recipe
from slimtorch.report.build import write_report
from slimtorch.train import distributed as D


def run_sweep(
    recipe: Recipe,
    out_dir: str | Path,
    *,
    force: bool = False,
    resume: bool = False,
    verbose: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run every point of ``recipe.sweep``; returns a result whose records are the points' final records.

    Distributed, non-main ranks return a result with no records (rank 0 holds the sweep's), and
    ``model`` is the last point's model only on the rank that ran that point (``None`` elsewhere).
    """
    points = sweep_points(recipe)
    D.init_from_env(recipe.device)
    out = _prepare(recipe, out_dir, force=force, resume=resume)
    run = dict(force=force, resume=resume, verbose=verbose, argv=argv)
    if D.is_distributed() and len(points) > 1:
        finals, info, last_model = _fan_out_points(recipe, points, out, run)
    else:
        finals, info, last_model = _serial_points(recipe, points, out, run)
    if not D.is_main():
        return RunResult(out, [], {}, last_model)
    records = [_named(recipe, k, final) for k, final in enumerate(finals)]
    results = {
        "recipe": recipe.name,
        "description": recipe.description,
        "records": records,
        "stages": info,
        "sweep": recipe.sweep.to_dict(),
        "artifacts": {},
    }
    atomic_write_json(out / "results.json", results)
    write_report(out, {**results, "environment": environment()})
    if verbose:
        print_table(records, title=f"sweep {recipe.sweep.param} — {out}")
    return RunResult(out, records, info, last_model)


def _prepare(recipe: Recipe, out_dir: str | Path, *, force: bool, resume: bool) -> Path:
    """Rank 0 creates (or clears) the sweep folder before any rank writes a point into it.

    Rank 0's outcome is gathered rather than waited for with a barrier, so when it refuses
    (folder exists, no ``--force``) every rank raises instead of the others hanging.
    """
    import yaml

    out, failure = Path(out_dir), None
    if D.is_main():
        try:
            out = prepare_output_dir(out_dir, force=force, resume=resume)
            atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
        except Exception as exc:  # noqa: BLE001  (re-raised below, after the other ranks heard of it)
            failure = exc
    outcome = D.all_gather_objects(None if failure is None else f"{type(failure).__name__}: {failure}")[0]
    if failure is not None:
        raise failure
    if outcome is not None:
        raise RuntimeError(f"rank 0 could not prepare the sweep folder: {outcome}")
    return out


def _point_name(recipe: Recipe, k: int) -> str:
    return f"{recipe.sweep.param.rsplit('.', 1)[-1]}={recipe.sweep.values[k]}"


def _named(recipe: Recipe, k: int, final: dict[str, Any]) -> dict[str, Any]:
    return {**final, "name": _point_name(recipe, k)}


def _info(recipe: Recipe, k: int, point_dir: Path) -> tuple[str, dict[str, Any]]:
    return _point_name(recipe, k), {"run": str(point_dir), "value": recipe.sweep.values[k]}


def _run_point(
    recipe: Recipe, points: list[Recipe], k: int, out: Path, run: dict[str, Any], tag: str = ""
) -> RunResult:
    if run["verbose"]:
        print(f"[sweep {k + 1}/{len(points)}{tag}] {recipe.sweep.param}={recipe.sweep.values[k]}", file=sys.stderr)
    return run_recipe(points[k], out / f"point_{k:02d}", **run)


def _serial_points(recipe: Recipe, points: list[Recipe], out: Path, run: dict[str, Any]):
    """One point after the other (under torchrun each point's training is itself DDP)."""
    finals, info, last = [], {}, None
    # a bar over the points on a terminal; the "[sweep k/n]" line per point is the plain log
    for k in track(range(len(points)), "sweep: points", plain=False) if run["verbose"] else range(len(points)):
        last = _run_point(recipe, points, k, out, run)
        finals.append(dict(last.final))
        name, entry = _info(recipe, k, last.out_dir)
        info[name] = entry
    return finals, info, last.model if last else None


def _fan_out_points(recipe: Recipe, points: list[Recipe], out: Path, run: dict[str, Any]):
    """Each rank runs its share of the points as single-process runs; every rank gets all final records."""
    last_model = None

    def one(k: int) -> dict[str, Any]:
        nonlocal last_model
        res = _run_point(recipe, points, k, out, run, tag=f" on rank {D.global_rank()}")
        last_model = res.model if k == len(points) - 1 else last_model
        return dict(res.final)

    finals = D.fan_out(one, list(range(len(points))))
    info = dict(_info(recipe, k, out / f"point_{k:02d}") for k in range(len(points)))
    return finals, info, last_model
