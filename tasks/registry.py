"""Job functions: the `@task` result envelope, and the explicit allow-list a worker node is given.

`@task` wraps a function so that its call returns an `Envelope` (value, pid, host, timings); it registers
nothing. Which functions a node may run is an `AllowList` handed to it by whoever starts it (arq's
`Worker(functions=...)` is the model); `tasks.catalog.TASKS` lists this package's tasks. A function's
name is its import path (e.g. `tasks.cpu.sum_squares`), which is also the `func_name` RQ stores for it.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NotRequired, TypedDict, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

HOST = socket.gethostname()


class Envelope(TypedDict):
    """What a `@task` call returns: the value, and where and when it was computed."""

    task: str
    value: Any
    pid: int
    host: str
    node: str  # '' where it ran; a worker node's slot fills in its node's name
    started: float
    ended: float
    cpu_s: float
    enqueued: NotRequired[float]  # epoch seconds; a slot adds it from the RQ job


class UnknownTask(KeyError):
    """A name that is not on the allow-list consulted."""

    def __str__(self) -> str:
        return f"{self.args[0]!r} is not a registered mplab task"


def name_of(fn: Callable[..., Any]) -> str:
    """A job function's name: its import path."""
    return f"{fn.__module__}.{fn.__qualname__}"


def task(fn: F) -> F:
    """Make `fn` a task: its call returns an `Envelope`; `fn` itself stays reachable as `__wrapped__`."""
    name = name_of(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Envelope:
        started = time.time()
        cpu0 = time.process_time()
        value = fn(*args, **kwargs)
        return Envelope(task=name, value=value, pid=os.getpid(), host=HOST, node="", started=started,
                        ended=time.time(), cpu_s=time.process_time() - cpu0)  # fmt: skip

    return wrapper  # type: ignore[return-value]


class AllowList:
    """The job functions a process may run, by name; nothing else resolves.

    Picklable (its functions pickle by reference), so a node hands it to slots and Pool processes under
    any start method.
    """

    def __init__(self, functions: Iterable[Callable[..., Any]]) -> None:
        self._functions: dict[str, Callable[..., Any]] = {name_of(fn): fn for fn in functions}

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def extended(self, *functions: Callable[..., Any]) -> AllowList:
        """This list plus `functions`."""
        return AllowList([*self, *functions])

    def names(self) -> list[str]:
        return sorted(self._functions)

    def resolve(self, name: str) -> Callable[..., Any]:
        """The job function called `name` (a task returns its envelope); UnknownTask otherwise."""
        try:
            return self._functions[name]
        except KeyError:
            raise UnknownTask(name) from None

    def raw(self, name: str) -> Callable[..., Any]:
        """The function called `name` without its envelope (returns just the value)."""
        fn = self.resolve(name)
        return getattr(fn, "__wrapped__", fn)
