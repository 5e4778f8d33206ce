"""Accuracy-aware auto-compression: the smallest or fastest model within an accuracy budget.

``auto_compress(model, train_data, eval_data, AutoConfig(target="size", max_drop=0.2,
budget_s=1200), "runs/auto")`` searches per-layer sparsity (from pruning sensitivity),
k-means bit widths and, for latency, structured channel ratios and INT8 deployment,
with short fine-tuning, keeping the Pareto set and the best model on disk as it goes.
Every choice is made on a selection split held out of ``train_data``; ``eval_data``
gives the chosen model's test figure, once.
See docs/auto.md; the command line is ``slimtorch auto``.
"""

from slimtorch.auto.config import AutoConfig, parse_budget
from slimtorch.auto.search import AutoResult, auto_compress, may_start
from slimtorch.auto.space import Candidate, latency_plan, size_plan, tolerance_ladder
from slimtorch.auto.splits import selection_size, selection_split

__all__ = [
    "AutoConfig",
    "AutoResult",
    "Candidate",
    "auto_compress",
    "latency_plan",
    "may_start",
    "parse_budget",
    "selection_size",
    "selection_split",
    "size_plan",
    "tolerance_ladder",
]
