"""What every experiment child starts with: default signal handling, and no CLI to re-import.

Two things leak from the process that runs an experiment into the children it creates:

- signal handlers and the signal mask. On a worker node the experiment runs inside a slot, whose SIGTERM
  handler is RQ's warm stop and whose SIGINT is ignored; a forked child inherits both, so `terminate()`
  would do nothing to it. Every child forked while an experiment runs gets the defaults back.
- the main module. spawn (and the fork server) re-import the parent's `__main__` in the child; for
  `mplab` that is the whole CLI (typer, rich, redis, rq), which made spawn look 5-30x more expensive than
  it is. While an experiment runs, `__main__` is an empty module, so a child imports only the module of
  its target function.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import types
from collections.abc import Iterator

RESET_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGCHLD)
"""Signals whose handler a child gets back at its default (SIGINT: Python's KeyboardInterrupt)."""

_depth = 0
_registered = False


def reset_signals() -> None:
    """Default handlers and an empty signal mask for the calling process (an experiment child)."""
    for sig in RESET_SIGNALS:
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


_saved_masks: list[set[int | signal.Signals]] = []


def _before_fork() -> None:
    # A signal that arrives between fork() and the reset would run the inherited handler in the child
    # (terminate() right after start() would be swallowed): keep them pending until the defaults are back.
    if _depth > 0:
        _saved_masks.append(signal.pthread_sigmask(signal.SIG_BLOCK, RESET_SIGNALS))


def _after_fork_in_parent() -> None:
    if _depth > 0 and _saved_masks:
        signal.pthread_sigmask(signal.SIG_SETMASK, _saved_masks.pop())


def _after_fork_in_child() -> None:
    if _depth > 0:
        _saved_masks.clear()
        reset_signals()  # also unblocks: a pending SIGTERM now ends the child, as terminate() intends


@contextlib.contextmanager
def experiment_children() -> Iterator[None]:
    """For the duration of the block, children start with default signals and a light `__main__`."""
    global _depth, _registered
    if not _registered:
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
        )
        _registered = True
    saved = sys.modules.get("__main__")
    if _depth == 0 and saved is not None:
        sys.modules["__main__"] = types.ModuleType("__main__", "an experiment's light main module")
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and saved is not None:
            sys.modules["__main__"] = saved
