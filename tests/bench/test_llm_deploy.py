"""bench/llm_deploy.py's selection rule: smallest file, then the faster kernel, within the budget."""

from __future__ import annotations

from bench.llm_deploy import choose_export


def _c(name, size, level, ppl):
    return {"name": name, "size_bytes": size, "selection_perplexity": ppl, "config": {"accuracy_level": level}}


def test_smallest_within_budget_then_faster_kernel():
    cands = [_c("e8_a0", 100, 0, 48.6), _c("e8_a4", 100, 4, 48.9), _c("e4_a4", 80, 4, 54.6), _c("e4_a0", 80, 0, 54.0)]
    assert choose_export(cands, reference=48.6, budget=0.5)["name"] == "e8_a4"
    assert choose_export(cands, reference=48.6, budget=6.0)["name"] == "e4_a4"


def test_nothing_within_budget_falls_back_to_the_most_faithful():
    cands = [_c("a", 100, 4, 60.0), _c("b", 80, 4, 70.0)]
    assert choose_export(cands, reference=40.0, budget=0.5)["name"] == "a"
