"""The stage protocol in ``core``: typed results, their JSON form, and the import rule it exists for."""

import ast
from dataclasses import FrozenInstanceError, dataclass
from pathlib import Path

import pytest

from slimtorch.core.stages import Context, StageResult, flattened, optional

SRC = Path(__file__).parents[2] / "src" / "slimtorch"
# the orchestrators (and the command-line modules at the top) may import the runner; no other package may
ORCHESTRATORS = {"pipeline", "auto"}


def _imports_pipeline(path: Path, root: Path = SRC.parent) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [
            f"{path.relative_to(root)}:{node.lineno} imports {n}" for n in names if n.startswith("slimtorch.pipeline")
        ]
    return found


def test_no_technique_package_imports_the_orchestrator():
    packages = [p for p in SRC.iterdir() if p.is_dir() and p.name not in ORCHESTRATORS and p.name != "__pycache__"]
    assert {"prune", "quantize", "distill", "deploy", "encode", "core", "train"} <= {p.name for p in packages}
    offenders = [hit for pkg in packages for f in sorted(pkg.rglob("*.py")) for hit in _imports_pipeline(f)]
    assert offenders == [], "import slimtorch.core.stages instead:\n" + "\n".join(offenders)


def test_the_rule_sees_a_function_level_import(tmp_path):
    pkg = tmp_path / "slimtorch" / "prune"
    pkg.mkdir(parents=True)
    (pkg / "m.py").write_text("def f():\n    from slimtorch.pipeline.context import Context\n")
    assert _imports_pipeline(pkg / "m.py", tmp_path) == ["slimtorch/prune/m.py:2 imports slimtorch.pipeline.context"]


@dataclass(frozen=True, kw_only=True)
class _Inner:
    a: int
    b: int | None


@dataclass(frozen=True, kw_only=True)
class _Result(StageResult):
    always: float | None
    sometimes: float | None = optional()
    group: _Inner | None = flattened()
    summary: dict = flattened(required=True)


def test_result_json_keeps_none_fields_omits_unset_optionals_and_flattens_groups():
    r = _Result(always=None, summary={"backend": "x"})
    assert r.to_dict() == {"always": None, "backend": "x"}
    r = _Result(always=0.5, sometimes=0.25, group=_Inner(a=1, b=None), summary={})
    assert r.to_dict() == {"always": 0.5, "sometimes": 0.25, "a": 1, "b": None}
    with pytest.raises(FrozenInstanceError):
        r.always = 1.0


def test_record_stores_the_typed_result_and_its_json(tmp_path):
    import torch

    ctx = Context(
        model=torch.nn.Linear(2, 2),
        train_data=None,
        test_data=None,
        out_dir=tmp_path,
        example_input=torch.zeros(1, 2),
        stage_name="s",
    )
    r = ctx.record(_Result(always=1.0, summary={}))
    assert ctx.results["s"] is r and ctx.info["s"] == {"always": 1.0}
    assert ctx.result("s", _Result) is r and ctx.result("s", _Inner) is None and ctx.result("t", _Result) is None


def test_old_import_paths_still_work():
    from slimtorch.core import stages
    from slimtorch.pipeline import STAGES, register_stage
    from slimtorch.pipeline.context import Context as OldContext
    from slimtorch.pipeline.lm import run_lm_stage
    from slimtorch.pipeline.registry import StageSpec
    from slimtorch.quantize.lm_stage_base import run_lm_stage as new_run_lm_stage

    assert OldContext is stages.Context and STAGES is stages.STAGES and StageSpec is stages.StageSpec
    assert register_stage is stages.register_stage and run_lm_stage is new_run_lm_stage
