"""One way to show progress for long work: a rich bar with ETA on a terminal, sparse log lines elsewhere.

CI logs and ``--nproc`` workers are not terminals; there a bar would print
garbage, so :func:`track` prints a plain line at most every ``every_s`` seconds
(and at the end) instead. ``SLIMTORCH_PROGRESS=0`` silences both.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _enabled() -> bool:
    return os.environ.get("SLIMTORCH_PROGRESS", "1") != "0"


def track(items: Iterable[T], description: str, total: int | None = None, every_s: float = 30.0) -> Iterator[T]:
    """Iterate ``items`` while showing progress on stderr."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not _enabled():
        yield from items
        return
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        # on stderr, like the plain lines: stdout stays the program's output (and survives redirect_stdout)
        with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task(description, total=total)
            for item in items:
                yield item
                bar.advance(task)
        return
    start = last = time.monotonic()
    for done, item in enumerate(items, start=1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or (total is not None and done == total):
            of = f"/{total}" if total is not None else ""
            print(f"{description}: {done}{of} ({now - start:.0f} s)", file=sys.stderr, flush=True)
            last = now
