"""Measurements: parameters, non-zeros, MACs, sizes, latency, accuracy, agreement."""

from slimtorch.measure.counts import count_nonzero, count_parameters, layer_sparsity
from slimtorch.measure.env import environment
from slimtorch.measure.latency import Latency, measure_latency, time_callable
from slimtorch.measure.macs import count_macs, layer_macs
from slimtorch.measure.record import MeasureRecord, measure
from slimtorch.measure.table import markdown_table, print_table

__all__ = [
    "Latency",
    "MeasureRecord",
    "count_macs",
    "count_nonzero",
    "count_parameters",
    "environment",
    "layer_macs",
    "layer_sparsity",
    "markdown_table",
    "measure",
    "measure_latency",
    "print_table",
    "time_callable",
]
