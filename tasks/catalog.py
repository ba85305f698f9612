"""This package's tasks as an allow-list: what in-host engines and a stock RQ worker resolve names from.

A worker node gets its own, longer list (these, the batch runner and the apps' job functions) from
whoever starts it: see `cli/node.py`.
"""

from __future__ import annotations

from typing import Any

from tasks import cpu, faults
from tasks.registry import AllowList

TASKS = AllowList([cpu.sum_squares, cpu.cpu_intensive_task, cpu.trivial, faults.fails_once, faults.nap])


def call_raw(name: str, *args: Any) -> Any:
    """Call task `name` without its envelope; picklable by reference (for Pools), unlike the function."""
    return TASKS.raw(name)(*args)
