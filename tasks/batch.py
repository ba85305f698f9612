"""A batch job: K calls of one task in one RQ job.

mplab's worker node recognises this function and fans the items out over its Pool (resolving the task
on the node's allow-list); any other RQ worker (e.g. a stock `rq worker --serializer json`) runs it here,
serially, on this package's tasks. Both return the same `BatchResult`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, NotRequired, TypedDict

from tasks import catalog
from tasks.registry import HOST


class ChunkResult(TypedDict):
    """What running a part of a batch in one process gives."""

    values: list[Any]
    pid: int
    cpu_s: float


class BatchResult(TypedDict):
    """A batch job's result: the values in item order, who computed how many, and when."""

    task: str
    count: int
    values: list[Any]
    tasks_per_pid: dict[str, int]
    host: str
    node: str  # '' where it ran; a worker node's slot fills in its node's name
    cpu_s: float
    started: float
    ended: float
    enqueued: NotRequired[float]  # epoch seconds; a slot adds it from the RQ job


def run_items(fn: Callable[..., Any], items: list[list[Any]]) -> ChunkResult:
    """Call `fn` on each argument list; the values plus who ran them and the CPU time spent."""
    cpu0 = time.process_time()
    values = [fn(*args) for args in items]
    return ChunkResult(values=values, pid=os.getpid(), cpu_s=time.process_time() - cpu0)


def merge(task: str, parts: list[ChunkResult], started: float) -> BatchResult:
    """Combine chunk results (in item order) into the batch result."""
    pids: dict[str, int] = {}
    values: list[Any] = []
    for part in parts:
        values.extend(part["values"])
        pids[str(part["pid"])] = pids.get(str(part["pid"]), 0) + len(part["values"])
    return BatchResult(task=task, count=len(values), values=values, tasks_per_pid=pids, host=HOST, node="",
                       cpu_s=sum(part["cpu_s"] for part in parts), started=started, ended=time.time())  # fmt: skip


def run_serial(task: str, fn: Callable[..., Any], items: list[list[Any]]) -> BatchResult:
    """A batch run here, in one process: `fn` (the task `task`, resolved by the caller) on every item."""
    started = time.time()
    return merge(task, [run_items(fn, items)], started)


def run_batch(task: str, items: list[list[Any]], chunksize: int = 0) -> BatchResult:
    """Serial reference implementation of a batch job (this package's tasks only; `chunksize` is the
    node's business)."""
    return run_serial(task, catalog.TASKS.raw(task), items)  # UnknownTask for any other name, this one too
