"""Re-measure the language-model headline's deterministic rows on the real model (slow; not in CI).

``pytest -m slow tests/bench/test_llm_headline_slow.py``: SmolLM2-135M in float32 and
with round-to-nearest 4-bit group-128 weights, on the same test windows as
``bench/llm.py``, must reproduce ``bench/results/llm.json`` (same code, same tokens:
equal up to float summation order).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "llm.json"


@pytest.mark.slow
@pytest.mark.parametrize("row", ["fp32", "rtn_w4g128"])
def test_llm_row_reproduces(row):
    from bench.llm import ROWS, run_row

    results = json.loads(RESULTS.read_text())
    recorded = results["rows"][row]
    method, config = ROWS[row]
    got = run_row(row, method, config, results["tokens"]["test_windows"])
    assert got["perplexity"] == pytest.approx(recorded["perplexity"], rel=2e-3)
    assert got["size_bytes"] == recorded["size_bytes"]
