"""Short fuzz of every reader (CI): mutated library-written files raise only documented errors.

``bench/fuzz.py`` runs the same harness with 100 000 inputs per format.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.reliability.fuzz_harness import fuzz, targets

torch.set_num_threads(1)
N = 250


@pytest.fixture(scope="module")
def all_targets():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return targets()


NAMES = ["slim", "slim_load", "model_file", "quantized", "recipe", "checkpoint", "idx", "cifar_binary", "cifar_python"]


@pytest.mark.parametrize("name", NAMES)
def test_reader_raises_only_documented_errors(all_targets, name, tmp_path):
    pool = [s for t in all_targets.values() for s in t.seeds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = fuzz(all_targets[name], N, seed=1234, others=pool, tmp=tmp_path)
    crashes = [f"{c['error']} @ {c['where']}" for c in out.crashes]
    assert crashes == [], "\n".join(crashes[:10])
    assert out.inputs >= N and sum(out.errors.values()) > N // 2  # the mutations really break files


def test_seed_files_load(all_targets, tmp_path):
    """The unmutated seeds are valid: the harness tests readers, not a broken writer."""
    for name, target in all_targets.items():
        for data in target.seeds:
            target.call(data, tmp_path)
