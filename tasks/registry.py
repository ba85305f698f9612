"""The allow-list of functions a worker node may execute, and the result envelope they return.

A function decorated with `@task` is registered under its import path (e.g. `tasks.cpu.sum_squares`),
which is also the `func_name` RQ stores for it. Called, it returns an envelope that says where and when
it ran; `raw(name)` gives the undecorated function for in-host engines that want only the value.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, Callable[..., Any]] = {}
_RAW: dict[str, Callable[..., Any]] = {}
_HOST = socket.gethostname()
_node_name = ""


class UnknownTask(KeyError):
    """Raised by `resolve` for a name that is not registered."""

    def __str__(self) -> str:
        return f"{self.args[0]!r} is not a registered mplab task"


def set_node_name(name: str) -> None:
    """Record which node this process belongs to (called by a node's processes at start)."""
    global _node_name
    _node_name = name


def node_name() -> str:
    """The node this process belongs to, or '' outside a node (e.g. a stock `rq worker`)."""
    return _node_name


def task(fn: F) -> F:
    """Register `fn` as a task whose call returns an envelope with value, pid, host, node and timings."""
    name = f"{fn.__module__}.{fn.__qualname__}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.time()
        cpu0 = time.process_time()
        value = fn(*args, **kwargs)
        return {
            "task": name,
            "value": value,
            "pid": os.getpid(),
            "host": _HOST,
            "node": _node_name,
            "started": started,
            "ended": time.time(),
            "cpu_s": time.process_time() - cpu0,
        }

    _REGISTRY[name] = wrapper
    _RAW[name] = fn
    return wrapper  # type: ignore[return-value]


def entrypoint(fn: F) -> F:
    """Register `fn` as a job function that builds its own result (batch runners, ticket buyers)."""
    name = f"{fn.__module__}.{fn.__qualname__}"
    _REGISTRY[name] = fn
    _RAW[name] = fn
    return fn


def _load_all() -> None:
    # Registration happens at import; importing the task modules here makes the registry complete
    # wherever it is consulted (node, CLI, stock worker).
    import tasks.batch  # noqa: F401
    import tasks.cpu  # noqa: F401
    import tasks.faults  # noqa: F401


def is_registered(name: str) -> bool:
    _load_all()
    return name in _REGISTRY


def resolve(name: str) -> Callable[..., Any]:
    """The registered job function called `name`; raises UnknownTask otherwise."""
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownTask(name) from None


def raw(name: str) -> Callable[..., Any]:
    """The undecorated function registered as `name` (returns just the value)."""
    _load_all()
    try:
        return _RAW[name]
    except KeyError:
        raise UnknownTask(name) from None


def call_raw(name: str, *args: Any) -> Any:
    """Call the undecorated task `name`; picklable by reference (for Pools), unlike the raw function."""
    return raw(name)(*args)


def names() -> list[str]:
    """All registered names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def name_of(fn: Callable[..., Any]) -> str:
    """The registered name of a task function."""
    return f"{fn.__module__}.{fn.__qualname__}"
