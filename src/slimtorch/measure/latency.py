"""Latency: median and p90 over many timed runs after warm-up, at a fixed thread count.

Wall-clock time with ``time.perf_counter`` around each call; the first
``warmup`` calls are discarded (allocator, oneDNN primitive caches). The thread
count is pinned for the measurement and restored after, so figures from one
run compare like with like.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch


@dataclass(frozen=True)
class Latency:
    batch_size: int
    median_ms: float
    p90_ms: float
    runs: int
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


def time_callable(fn: Callable[[], object], warmup: int = 5, runs: int = 30, min_seconds: float = 0.0) -> list[float]:
    """Seconds per call of ``fn`` for ``runs`` calls (more if ``min_seconds`` is not reached)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < runs or (time.perf_counter() - start) < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 10 * runs:
            break
    return times


def summarize(times: list[float], batch_size: int, threads: int) -> Latency:
    s = sorted(times)
    p90 = s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))]
    return Latency(batch_size, statistics.median(s) * 1e3, p90 * 1e3, len(s), threads)


@torch.inference_mode()
def measure_latency(
    model: torch.nn.Module | Callable[[torch.Tensor], object],
    example_input: torch.Tensor,
    batch_size: int = 1,
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 30,
) -> Latency:
    """Latency of ``model`` on a batch built by repeating ``example_input[:1]`` ``batch_size`` times."""
    x = example_input[:1].repeat(batch_size, *([1] * (example_input.ndim - 1)))
    if isinstance(model, torch.nn.Module):
        model.eval()
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        times = time_callable(lambda: model(x), warmup=warmup, runs=runs)
        return summarize(times, batch_size, torch.get_num_threads())
    finally:
        torch.set_num_threads(old)
