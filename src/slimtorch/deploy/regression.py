"""Never a silent regression: compare a deployed result with the float model on its fastest runtime.

A quantized model that is slower than the float one, or not smaller, is a bug to
report, not a result to hide (DESIGN.md). :func:`regressions` turns the
measurements into one line per problem; the caller prints them and records them
in the run's report (``info["warnings"]``).
"""

from __future__ import annotations

import sys


def regressions(
    what: str,
    latency_ms: dict[int, dict[str, float]],
    candidate: str,
    baselines: tuple[str, ...],
    size_bytes: int | None = None,
    baseline_bytes: int | None = None,
    baseline_name: str = "fp32",
) -> list[str]:
    """One-line messages for each batch size where ``candidate`` is slower than the fastest baseline,
    and when it is not smaller.

    Args:
        what: the result's name in the messages, e.g. ``"int8 (onnxruntime)"``.
        latency_ms: per batch size, median ms of the candidate and the baselines (timed interleaved).
        candidate: key of the result in ``latency_ms[b]``; ``baselines``: keys of the float runtimes.
        size_bytes / baseline_bytes: the result's and the float model's size on disk.
    """
    out = []
    for bs, lat in sorted(latency_ms.items()):
        fastest = min(baselines, key=lambda k: lat[k])
        if lat[candidate] > lat[fastest]:
            out.append(
                f"{what} is slower than {baseline_name} on {fastest} at batch {bs}: "
                f"{lat[candidate]:.3g} ms vs {lat[fastest]:.3g} ms ({lat[fastest] / lat[candidate]:.2f}x)"
            )
    if size_bytes is not None and baseline_bytes is not None and size_bytes >= baseline_bytes:
        out.append(f"{what} is not smaller than {baseline_name}: {size_bytes} B vs {baseline_bytes} B")
    return out


def warn(messages: list[str], stage: str | None = None) -> None:
    """Print each message as one line on stderr."""
    where = f" [{stage}]" if stage else ""
    for m in messages:
        print(f"slimtorch: warning{where}: {m}", file=sys.stderr, flush=True)
