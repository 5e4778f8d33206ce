"""Re-run the LeNet-5 pruning headline and hold it to ``bench/results/pruning.json`` (slow; not in CI).

``pytest -m slow tests/bench/test_pruning_headline_slow.py`` (about 10 min on 2 cores): the dense
LeNet-5 trained again as the bench trains it (same 55k images, seed, one thread), then the schedule
the bench chose on validation. Seeded training on one thread repeats itself; the tolerance
(0.1 pp = 10 test images) absorbs kernel-order differences between torch builds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "pruning.json"


@pytest.mark.slow
def test_lenet5_pruning_headline_reproduces():
    from bench.pruning import headline, train_dense

    rec = json.loads(RESULTS.read_text())["lenet5"]
    assert rec["headline"]["rule"].startswith("lower validation error")  # chosen on validation, not on test
    dense = train_dense("lenet5", rec["dense"]["epochs"])
    assert 100 * dense["test_error"] == pytest.approx(100 * rec["dense"]["test_error"], abs=0.1)
    out = headline("lenet5", rec["headline"]["candidate"], dense)
    assert out["weight_sparsity"] == pytest.approx(rec["headline"]["weight_sparsity"], abs=1e-4)
    assert 100 * out["test_error"] == pytest.approx(100 * rec["headline"]["test_error"], abs=0.1)
    assert 100 * out["val_error"] == pytest.approx(100 * rec["headline"]["val_error"], abs=0.1)
