"""Reports: Markdown, JSON and a self-contained HTML page with trade-off plots."""

from slimtorch.report.build import compare_runs, read_results, write_report
from slimtorch.report.plots import pareto_front
from slimtorch.report.weights import weight_summary

__all__ = ["compare_runs", "pareto_front", "read_results", "weight_summary", "write_report"]
