"""Per-process context inside a worker node: which node, its Redis, and its host-wide Lock.

Set once in every process of a node (slots and Pool processes) from values the node passes down at
process creation; never a Redis client across a process boundary, only its URL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import redis

_node = ""
_url: str | None = None
_client: redis.Redis | None = None
_host_lock: Any = None


SHUTDOWN_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block SIGTERM/SIGINT while starting node processes (and in the threads started meanwhile).

    A child inherits its parent's signal handlers and mask: with the signals blocked, one sent before
    the child has installed its own handlers waits, instead of running the node's handler in the child.
    """
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SHUTDOWN_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def child_signals(on_term: Any = signal.SIG_DFL) -> None:
    """First thing in a node's child: its own handlers (Ctrl-C is the node's to handle), then unblock."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SHUTDOWN_SIGNALS)


def die_with_parent(sig: int, parent_pid: int) -> bool:
    """Have Linux send `sig` to this process the moment its parent dies (PR_SET_PDEATHSIG).

    Returns False if the parent is already gone (the request came too late). Elsewhere a no-op: the
    callers also poll their parent pid.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)
    return os.getppid() == parent_pid


def init(node_name: str, redis_url: str | None, host_lock: Any) -> None:
    """Called at start of each node process."""
    global _node, _url, _client, _host_lock
    _node = node_name
    _url = redis_url
    _client = None
    _host_lock = host_lock


def node_name() -> str:
    """The node this process belongs to, or '' outside a node (e.g. a stock `rq worker`)."""
    return _node


def redis_url() -> str | None:
    """This node's Redis URL, or None outside a node."""
    return _url


def connection() -> redis.Redis:
    """This node's Redis (rebuilt per process from the URL); outside a node, the current RQ job's."""
    global _client
    if _url is not None:
        if _client is None:
            _client = redis.Redis.from_url(_url)
        return _client
    from rq import get_current_job

    job = get_current_job()
    if job is None:
        raise RuntimeError("no node Redis and no current RQ job")
    return job.connection


def host_lock() -> Any:
    """The node's multiprocessing.Lock shared by all its processes, or None outside a node."""
    return _host_lock
