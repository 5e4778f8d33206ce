"""MSE activation ranges: the chosen range beats min/max and every other range on the objective."""

from __future__ import annotations

import numpy as np
import pytest

from slimtorch.deploy.mse_ranges import expected_mse, mse_range


def _hist(x: np.ndarray, bins: int = 2048):
    t = np.abs(x).max()
    return np.histogram(x, bins, range=(-t, t))


def test_heavy_tail_is_clipped_and_the_error_is_lower_than_min_max():
    x = np.random.default_rng(0).laplace(0, 1, 200_000)
    counts, edges = _hist(x)
    lo, hi = mse_range(counts, edges)
    centers = (edges[:-1] + edges[1:]) / 2
    assert x.min() + 1 < lo < 0 < hi < x.max() - 1  # both tails clipped
    best = expected_mse(counts, centers, lo, hi)
    assert best < 0.9 * expected_mse(counts, centers, x.min(), x.max())
    # a local search around the answer finds nothing better (coordinate descent converged)
    for dlo in (-0.3, 0.0, 0.3):
        for dhi in (-0.3, 0.0, 0.3):
            assert expected_mse(counts, centers, min(0.0, lo + dlo), max(0.0, hi + dhi)) >= best - 1e-12


def test_isolated_outliers_are_kept_when_clipping_them_costs_more():
    # two far outliers among 100 k values: clipping them would add more squared error than the
    # wider step costs everyone else, so MSE (unlike a percentile) keeps them in range
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, 100_000), [60.0, -45.0]])
    counts, edges = _hist(x)
    lo, hi = mse_range(counts, edges)
    assert lo < -30 and hi > 40


def test_non_negative_tensor_keeps_zero_as_the_low_end():
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(0.5, 1, 50_000), 0)  # a ReLU output
    counts, edges = _hist(x)
    lo, hi = mse_range(counts, edges)
    assert lo == pytest.approx(0.0, abs=2 * (edges[1] - edges[0])) and 0 < hi <= x.max() + 1e-9


def test_uniform_data_keeps_its_whole_range():
    # nothing to gain by clipping a uniform distribution: the range covers (nearly) all of it
    x = np.random.default_rng(2).uniform(-3, 5, 200_000)
    counts, edges = _hist(x)
    lo, hi = mse_range(counts, edges)
    assert lo < -2.9 and hi > 4.9


def test_empty_histogram_gives_a_zero_range():
    assert mse_range(np.zeros(8), np.linspace(-1, 1, 9)) == (0.0, 0.0)
