"""The model matrix: every user-style model x every technique works or raises the documented error.

The expected outcome of each cell is read from the table in docs/model_matrix.md,
so the docs and the behaviour cannot drift apart. A cell that works checks its
own result (output close to float, files round-trip, something changed: see
tests/models/matrix.py); a cell that fails must raise a slimtorch error whose
message names the layer or the model. Anything else (a crash from PyTorch or
ONNX Runtime, a silent no-op) fails the test.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.models.matrix import MODELS, TECHNIQUES, run_cell

DOC = Path(__file__).parents[2] / "docs" / "model_matrix.md"
# cells that take seconds each (ONNX export + ONNX Runtime sessions of the transformer-sized rows)
HEAVY = {"int8_static", "int8_dynamic", "onnx_export"}
HEAVY_MODELS = {"hf_bert", "hf_llama", "attention_block"}


def documented() -> dict[tuple[str, str], str]:
    lines = [ln for ln in DOC.read_text().splitlines() if ln.startswith("| ") and not ln.startswith("| model")]
    header = next(ln for ln in DOC.read_text().splitlines() if ln.startswith("| model"))
    techniques = [c.strip() for c in header.strip("|").split("|")][1:]
    out = {}
    for ln in lines:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        for t, c in zip(techniques, cells[1:], strict=True):
            out[(cells[0], t)] = re.sub(r"\s*\[\d+\]$", "", c)
    return out


EXPECTED = documented()
CELLS = [
    pytest.param(
        case,
        t,
        id=f"{case.name}-{t.__name__}",
        marks=[pytest.mark.slow] if t.__name__ in HEAVY and case.name in HEAVY_MODELS else [],
    )
    for case in MODELS
    for t in TECHNIQUES
]


def test_the_docs_table_covers_every_cell():
    assert set(EXPECTED) == {(c.name, t.__name__) for c in MODELS for t in TECHNIQUES}


@pytest.mark.parametrize("case, technique", CELLS)
def test_cell_works_or_raises_its_documented_error(case, technique):
    status, message = run_cell(case, technique)
    assert status == EXPECTED[(case.name, technique.__name__)], message
    if status != "ok":
        assert re.search(
            r"'[\w.\[\] ]+'|\b[A-Z]\w+(Net|Block|Grouped|Parameter|Weights|Classifier|Logits)\b", message
        ), message
