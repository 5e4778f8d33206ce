"""docs/int8.md's "Where the time goes" block is the render of bench/results/int8.json (never typed by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def summarize():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import summarize as mod
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return mod


def test_profile_block_in_docs_matches_the_results_file(summarize):
    data = json.loads((ROOT / "bench" / "results" / "int8.json").read_text())
    if "mobilenet_profile" not in data:
        pytest.skip("bench/int8.py profile has not been run")
    text = (ROOT / "docs" / "int8.md").read_text()
    block = text.split("<!-- profile:begin -->\n", 1)[1].split("<!-- profile:end -->", 1)[0]
    assert block == "\n".join(summarize.int8_profile(data)) + "\n", "run `python bench/summarize.py`"


def test_profile_render_puts_every_category_in_the_table(summarize):
    from slimtorch.measure.ort_profile import CATEGORIES

    data = json.loads((ROOT / "bench" / "results" / "int8.json").read_text())
    if "minilm_profile" not in data:
        pytest.skip("bench/int8.py profile has not been run")
    lines = summarize.int8_profile({"minilm_profile": data["minilm_profile"]})
    rows = [line for line in lines if line.startswith("| ")]
    assert sum(
        any(line.startswith(f"| {label} |") for line in rows)
        for label in (summarize._PROFILE_LABELS[c] for c in CATEGORIES)
    ) == len(CATEGORIES)
    assert any(line.startswith("**Diagnosis**") for line in lines)
