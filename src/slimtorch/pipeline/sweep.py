"""Sweeps: run a recipe once per value of one parameter and plot the trade-off.

Each point is an ordinary run in ``out/point_KK``; the sweep folder gets a
``results.json`` whose records are each point's final measurement, and the
usual report (whose accuracy-vs-size plot is then the sweep's trade-off curve
with its Pareto front).
"""

from __future__ import annotations

import sys
from pathlib import Path

from slimtorch.core.fileio import atomic_write_json, atomic_write_text, prepare_output_dir
from slimtorch.measure.env import environment
from slimtorch.measure.table import print_table
from slimtorch.pipeline.recipe import Recipe, sweep_points
from slimtorch.pipeline.runner import RunResult, run_recipe
from slimtorch.report.build import write_report


def run_sweep(
    recipe: Recipe, out_dir: str | Path, *, force: bool = False, resume: bool = False, verbose: bool = True,
    argv: list[str] | None = None,
) -> RunResult:
    """Run every point of ``recipe.sweep``; returns a result whose records are the points' final records."""
    import yaml

    out = prepare_output_dir(out_dir, force=force, resume=resume)
    atomic_write_text(out / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    records, info = [], {}
    last = None
    for k, point in enumerate(sweep_points(recipe)):
        value = recipe.sweep.values[k]
        if verbose:
            print(f"[sweep {k + 1}/{len(recipe.sweep.values)}] {recipe.sweep.param}={value}", file=sys.stderr)
        last = run_recipe(point, out / f"point_{k:02d}", force=force, resume=resume, verbose=verbose, argv=argv)
        final = dict(last.final)
        final["name"] = f"{recipe.sweep.param.rsplit('.', 1)[-1]}={value}"
        records.append(final)
        info[final["name"]] = {"run": str(last.out_dir), "value": value}
    results = {"recipe": recipe.name, "description": recipe.description, "records": records, "stages": info,
               "sweep": recipe.sweep.to_dict(), "artifacts": {}}  # fmt: skip
    atomic_write_json(out / "results.json", results)
    write_report(out, {**results, "environment": environment()})
    if verbose:
        print_table(records, title=f"sweep {recipe.sweep.param} — {out}")
    return RunResult(out, records, info, last.model if last else None)
