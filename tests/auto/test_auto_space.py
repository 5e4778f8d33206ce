"""The search plans, budget rule and config, without training anything."""

from __future__ import annotations

import pytest

from slimtorch.auto import AutoConfig, latency_plan, may_start, parse_budget, size_plan, tolerance_ladder
from slimtorch.auto.space import bisect
from slimtorch.core import ConfigError

CURVES = {
    "a": [(0.0, 0.99), (0.5, 0.99), (0.8, 0.98), (0.9, 0.90)],
    "b": [(0.0, 0.99), (0.5, 0.97), (0.8, 0.95), (0.9, 0.50)],
}


def drive(plan, oracle):
    """Run a plan against ``oracle(candidate) -> bool``; returns the candidates in order."""
    out, cand = [], next(plan, None)
    while cand is not None:
        out.append(cand)
        try:
            cand = plan.send(oracle(cand))
        except StopIteration:
            cand = None
    return out


def test_ladder_is_monotone_and_starts_without_pruning():
    ladder = tolerance_ladder(CURVES, 0.99)
    assert ladder[0][1] == {"a": 0.0, "b": 0.0}
    for (t0, p0), (t1, p1) in zip(ladder, ladder[1:]):
        assert t1 > t0 and p0 != p1 and all(p1[k] >= p0[k] for k in p0)
    # tolerance 0: each layer at its highest sparsity costing nothing alone
    assert (0.0, {"a": 0.5, "b": 0.0}) in ladder
    assert ladder[-1][1] == {"a": 0.9, "b": 0.9}


@pytest.mark.parametrize("boundary", [-1, 0, 3, 6, 9])
def test_bisect_finds_the_last_feasible_rung(boundary):
    n = 10
    gen = bisect(lambda i: i, n)
    seen = []
    try:
        i = next(gen)
        while True:
            seen.append(i)
            i = gen.send(i <= boundary)
    except StopIteration as stop:
        assert stop.value == boundary
    assert len(seen) <= 4 and len(set(seen)) == len(seen)


def test_size_plan_bisects_then_lowers_bits():
    cfg = AutoConfig(bits=(6, 5, 4), small_layer_fraction=0.2, small_layer_bits=8)
    ladder = tolerance_ladder(CURVES, 0.99)
    sizes = {"a": 1000, "b": 100}
    # feasible up to rung 3 at >= 5 bits
    cands = drive(size_plan(ladder, sizes, cfg), lambda c: c.knobs["rung"] <= 3 and c.knobs["bits"] >= 5)
    assert cands[-1].knobs == {"rung": 3, "tolerance": ladder[3][0], "bits": 4}
    assert cands[-2].knobs["bits"] == 5 and cands[-2].knobs["rung"] == 3
    assert all(c.params["bits"]["b"] == 8 for c in cands)  # the small layer keeps 8 bits
    assert len({c.key for c in cands}) == len(cands)


def test_size_plan_refines_the_rungs_above_the_best_with_longer_finetuning():
    cfg = AutoConfig(bits=(6, 5), finetune_epochs=1, refine_epochs=4, small_layer_fraction=0.0)
    ladder = tolerance_ladder(CURVES, 0.99)
    sizes = {"a": 1000, "b": 100}

    # 1 epoch passes up to rung 2 at 6 bits only; 4 epochs pass up to the second-to-last rung at 6 bits
    def oracle(c):
        limit = len(ladder) - 2 if c.knobs.get("finetune_epochs") == 4 else 2
        return c.knobs["rung"] <= limit and c.knobs["bits"] == 6

    cands = drive(size_plan(ladder, sizes, cfg), oracle)
    cheap = [c for c in cands if "finetune_epochs" not in c.knobs]
    refined = [c for c in cands if "finetune_epochs" in c.knobs]
    assert refined and cands[: len(cheap)] == cheap  # refinement comes after the cheap search
    assert all(c.params["finetune_epochs"] == 4 and c.knobs["rung"] > 2 and c.knobs["bits"] == 6 for c in refined)
    assert max(c.knobs["rung"] for c in refined if oracle(c)) == len(ladder) - 2
    assert len({c.key for c in cands}) == len(cands)
    # without refine_epochs the plan stops after the cheap search
    assert all(
        "finetune_epochs" not in c.knobs for c in drive(size_plan(ladder, sizes, cfg.replace(refine_epochs=0)), oracle)
    )


def test_latency_plan_single_knobs_first_then_both():
    cfg = AutoConfig(target="latency", channel_ratios=(0.2, 0.4, 0.6))
    cands = drive(latency_plan(cfg), lambda c: c.params["channel_ratio"] <= 0.4)
    assert cands[0].params == {"channel_ratio": 0.0, "int8": True}
    float_ratios = [c.params["channel_ratio"] for c in cands if not c.params["int8"]]
    both = [c.params["channel_ratio"] for c in cands[1:] if c.params["int8"]]
    assert 0.4 in float_ratios and 0.6 in float_ratios and both and max(both) <= 0.4


def test_may_start_uses_the_mean_cost_so_far():
    assert may_start(100.0, [], 5.0)  # the first candidate always runs
    assert may_start(3.0, [1.0, 3.0], 5.0)
    assert not may_start(3.5, [1.0, 3.0], 5.0)
    assert may_start(1e9, [1.0], None)


@pytest.mark.parametrize("text,seconds", [("20m", 1200), ("90s", 90), ("1.5h", 5400), ("300", 300), (None, None)])
def test_parse_budget(text, seconds):
    assert parse_budget(text) == seconds


def test_bad_values_raise_config_errors_naming_the_field():
    with pytest.raises(ConfigError, match="budget"):
        parse_budget("soon")
    with pytest.raises(ConfigError, match="bits"):
        AutoConfig.from_dict({"bits": [0]})
    with pytest.raises(ConfigError, match="target"):
        AutoConfig.from_dict({"target": "speed"})
    cfg = AutoConfig(max_drop=0.2, bits=(8, 5))
    assert AutoConfig.from_dict(cfg.to_dict()) == cfg
