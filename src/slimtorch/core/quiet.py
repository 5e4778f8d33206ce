"""Scoped silence and scoped torch settings: every change here is undone when the block ends.

Third-party runtimes we call (ONNX Runtime's quantizer, the deprecated
``torch.ao`` FX flow, torchao, the ONNX exporter) log every step, print
deprecation notices and progress lines, or need a process-wide torch setting
(the quantized engine). A library must not leave any of that behind: a user's
logging configuration, ``sys.stderr`` and torch flags are the same after a
slimtorch call as before it, also when the call raises. So each such change is a
context manager that restores the old value in ``finally``.

Swapping ``sys.stderr`` is process-wide while the block runs (other threads
writing to it are silenced too); nothing touches file descriptor 2, so output
of C++ code and of child processes is never hidden. When the block raises, the
captured text is attached to the exception as a note: a failure keeps its
diagnostics.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator

import torch

_NOTE_CHARS = 4000  # the tail of captured stderr a failure carries


@contextlib.contextmanager
def log_level(level: int, *names: str) -> Iterator[None]:
    """Set the loggers ``names`` (default: the root logger) to ``level`` for the block, then restore them.

    Only levels change: handlers, filters and propagation are left alone.
    """
    loggers = [logging.getLogger(n) for n in names] if names else [logging.getLogger()]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lvl in zip(loggers, old):
            lg.setLevel(lvl)


@contextlib.contextmanager
def quiet(*, stdout: bool = False) -> Iterator[None]:
    """Hide warnings, log records below ERROR and Python-level stderr (and stdout if asked) for the block.

    Everything is restored on exit, normal or not. If the block raises, what it wrote to
    stderr (its tail) is added to the exception as a note instead of being lost.
    """
    err = io.StringIO()
    out = io.StringIO() if stdout else None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(log_level(logging.ERROR))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            stack.enter_context(contextlib.redirect_stderr(err))
            if out is not None:
                stack.enter_context(contextlib.redirect_stdout(out))
            yield
    except BaseException as exc:
        text = err.getvalue().strip()
        if text and not isinstance(exc, (KeyboardInterrupt, SystemExit)):
            exc.add_note(f"stderr of the silenced call (last {_NOTE_CHARS} characters):\n{text[-_NOTE_CHARS:]}")
        raise


@contextlib.contextmanager
def quantized_engine(name: str) -> Iterator[None]:
    """Use torch's quantized engine ``name`` (e.g. ``"x86"``) for the block, then restore the previous one."""
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = old


@contextlib.contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads (``None``: leave the count alone), then restore the count."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
