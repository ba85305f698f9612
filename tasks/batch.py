"""A batch job: K calls of one registered task in one RQ job.

mplab's worker node recognises this function and fans the items out over its Pool; any other RQ worker
(e.g. a stock `rq worker --serializer json`) simply runs it here, serially. Both return the same shape.
"""

from __future__ import annotations

import os
import time
from typing import Any

from tasks import registry


def run_items(task: str, items: list[list[Any]]) -> dict[str, Any]:
    """Run `task` on each argument list; the values plus who ran them and the CPU time spent."""
    fn = registry.raw(task)
    cpu0 = time.process_time()
    values = [fn(*args) for args in items]
    return {"values": values, "pid": os.getpid(), "cpu_s": time.process_time() - cpu0}


def merge(task: str, parts: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """Combine chunk results (in item order) into the batch result."""
    pids: dict[str, int] = {}
    values: list[Any] = []
    for part in parts:
        values.extend(part["values"])
        pids[str(part["pid"])] = pids.get(str(part["pid"]), 0) + len(part["values"])
    return {
        "task": task,
        "count": len(values),
        "values": values,
        "tasks_per_pid": pids,
        "host": registry._HOST,
        "node": registry.node_name(),
        "cpu_s": sum(part["cpu_s"] for part in parts),
        "started": started,
        "ended": time.time(),
    }


@registry.entrypoint
def run_batch(task: str, items: list[list[Any]], chunksize: int = 0) -> dict[str, Any]:
    """Serial reference implementation of a batch job."""
    if not registry.is_registered(task) or task == registry.name_of(run_batch):
        raise registry.UnknownTask(task)
    started = time.time()
    return merge(task, [run_items(task, items)], started)
