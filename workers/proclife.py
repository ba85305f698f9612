"""How the processes mplab starts end: never before their signals are theirs, never after their parent.

One home for the process-lifetime rules every engine follows (node, slots, Pool, compare, the lab, the
ticket sale, the embedded redis-server):

- `signals_blocked()` while starting children, and `child_signals()` first thing in each child: a
  Ctrl-C that reaches the process group between fork and the child's own handlers waits, instead of
  running the parent's handler (or raising KeyboardInterrupt) in the child.
- `die_with_parent()`: Linux signals the child the moment its parent dies (PR_SET_PDEATHSIG);
  `watch_parent()` is the polling fallback elsewhere, and a second line where a signal can be missed.
- `reaped()`: whatever happens in a block, the processes it started are joined, or killed and joined.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block SIGTERM/SIGINT while starting processes (and in the threads started meanwhile).

    A child inherits its parent's signal handlers and mask: with the signals blocked, one sent before
    the child has installed its own handlers waits, instead of running the parent's handler in the child.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def child_signals(on_term: Any = signal.SIG_DFL) -> None:
    """First thing in a child: its own handlers (Ctrl-C is the parent's to handle), then unblock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHUTDOWN_SIGNALS)


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> bool:
    """Have Linux send `sig` to this process the moment its parent dies (PR_SET_PDEATHSIG).

    Also a `preexec_fn` for subprocess. Returns False if `parent_pid` is given and already gone (the
    request came too late). Elsewhere than Linux a no-op: callers also `watch_parent`.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    return parent_pid is None or os.getppid() == parent_pid


def quiet_child() -> None:
    """A command's helper process: Ctrl-C is the command's (it stops its children in order); dies with it."""
    child_signals()
    die_with_parent()


def watch_parent(parent_pid: int, on_orphan: Callable[[], object], interval: float = 1.0) -> threading.Thread:
    """A daemon thread that calls `on_orphan()` once, as soon as this process's parent is no longer
    `parent_pid` (it died: the process was re-parented)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval)
        on_orphan()

    thread = threading.Thread(target=watch, daemon=True, name="parent-watch")
    thread.start()
    return thread


class Joinable(Protocol):
    """A multiprocessing process (any start method's)."""

    @property
    def pid(self) -> int | None: ...

    def join(self, timeout: float | None = None) -> None: ...

    def is_alive(self) -> bool: ...

    def kill(self) -> None: ...


@contextlib.contextmanager
def reaped(*procs: Joinable, timeout: float = 2.0) -> Iterator[None]:
    """Whatever happens in the block, give each started process `timeout` s to end, then kill and join it."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.pid is None:  # never started
                continue
            with contextlib.suppress(ValueError):  # closed already: nothing left to reap
                proc.join(timeout=timeout)
                if proc.is_alive():
                    proc.kill()
                proc.join()
