"""One way to show progress for long work: a rich bar with ETA on a terminal, sparse log lines elsewhere.

CI logs and ``--nproc`` workers are not terminals; there a bar would print
garbage, so :func:`track` prints a plain line at most every ``every_s`` seconds
(and at the end) instead. ``SLIMTORCH_PROGRESS=0`` silences both.

Nested work (an epoch's batches inside the training's epochs, a candidate's
k-means inside a search) shares one bar display: the inner loop adds a line to
it instead of starting a second live display. Lines printed while a bar is
shown (epoch summaries, warnings) appear above it. Under ``torchrun``
(``--nproc``) only rank 0 shows progress, so the processes never interleave.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_live: Any = None  # the rich Progress on screen while a terminal bar is shown (nested loops add tasks to it)


def _enabled() -> bool:
    if os.environ.get("SLIMTORCH_PROGRESS", "1") == "0":
        return False
    return os.environ.get("RANK", "0") in ("", "0")  # torchrun workers other than rank 0 stay silent


def _new_bar():
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    # on stderr, like the plain lines: stdout stays the program's output (and survives redirect_stdout)
    return Progress(*columns, transient=True, console=Console(stderr=True))


@contextlib.contextmanager
def task(
    description: str, total: int | None = None, every_s: float = 30.0, plain: bool = True
) -> Iterator[Callable[..., None]]:
    """Show progress of work advanced by hand: ``with task("search", 10) as advance: ... advance()``.

    For loops that are not a plain iteration (a generator driven with ``send``).

    Args:
        plain: off a terminal, print ``description: done/total (seconds)`` lines; ``False`` for
            loops that already log one line per item (training epochs, ``auto`` candidates),
            where the bar is only worth having on a terminal.
    """
    if not _enabled():
        yield lambda n=1: None
        return
    if sys.stderr.isatty():
        global _live
        outer = _live is None
        if outer:
            _live = _new_bar()
            _live.start()
        bar = _live
        tid = bar.add_task(description, total=total)
        try:
            yield lambda n=1: bar.advance(tid, n)
        finally:
            bar.remove_task(tid)
            if outer:
                bar.stop()
                _live = None
        return
    start = time.monotonic()
    state = {"done": 0, "last": start}

    def advance(n: int = 1) -> None:
        state["done"] += n
        now = time.monotonic()
        if plain and (now - state["last"] >= every_s or (total is not None and state["done"] == total)):
            of = f"/{total}" if total is not None else ""
            print(f"{description}: {state['done']}{of} ({now - start:.0f} s)", file=sys.stderr, flush=True)
            state["last"] = now

    yield advance


def track(
    items: Iterable[T], description: str, total: int | None = None, every_s: float = 30.0, plain: bool = True
) -> Iterator[T]:
    """Iterate ``items`` while showing progress on stderr (see :func:`task` for ``plain``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with task(description, total, every_s, plain) as advance:
        for item in items:
            yield item
            advance()
