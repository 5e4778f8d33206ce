"""Re-run the LeNet-5 structured-pruning headline and hold it to ``bench/results/structured.json`` (slow; not in CI).

``pytest -m slow tests/bench/test_structured_headline_slow.py`` (about 10 min on 2 cores when the
dense model is not cached): the dense LeNet-5 as the bench trains it (seed 0; cached under
``SLIMTORCH_CACHE_DIR``), channels pruned at 60 % and fine-tuned with KD exactly as the bench does.
The figures are the MAC reduction (exact: the same channels go) and the test accuracy after
KD (within 0.15 pp = 15 images: seeded, but the dense model may come from another torch build).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "structured.json"


@pytest.mark.slow
def test_lenet5_structured_kd_headline_reproduces():
    import torch

    from bench.structured import THREADS, dense_lenet5, prune_lenet5_with_kd
    from slimtorch.data import load_mnist
    from slimtorch.measure import count_macs
    from slimtorch.train import evaluate

    torch.set_num_threads(THREADS)
    rec = json.loads(RESULTS.read_text())["lenet5"]["variants"]
    train, test = load_mnist()
    dense = dense_lenet5(train, test)
    assert evaluate(dense, test).accuracy == pytest.approx(rec["dense"]["accuracy"], abs=1.5e-3)
    x = test[:1][0].repeat(2, 1, 1, 1)
    pruned, _, cfg, _ = prune_lenet5_with_kd(dense, train, test, x, 0.6)
    recorded = dict(rec["ratio0.6"]["config"])
    if "ignored_layers" in recorded:  # recorded before layers: {include, exclude} replaced ignored_layers (issue 19)
        recorded["layers"] = {"include": None, "exclude": recorded.pop("ignored_layers")}
    assert cfg.to_dict() == recorded
    assert count_macs(pruned, x[:1]) == rec["ratio0.6"]["macs"]
    assert evaluate(pruned, test).accuracy == pytest.approx(rec["ratio0.6"]["accuracy_finetuned"], abs=1.5e-3)
