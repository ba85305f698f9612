"""The chapter's CPU-bound workloads (section 7.1) and a trivial task that measures pure overhead."""

from __future__ import annotations

from typing import Any

from tasks.registry import task


@task
def sum_squares(n: int) -> int:
    """sum(i*i for i in range(n)): the `task` of section 7.1.3 (n=2_000_000 takes ~64 ms here)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return sum(i * i for i in range(n))


@task
def cpu_intensive_task(task_id: str, numbers: list[int]) -> list[Any]:
    """Section 7.1.1: for each number, the sum of squares below it, added up. Returns [task_id, result]."""
    if any(n < 0 for n in numbers):
        raise ValueError("numbers must be >= 0")
    return [task_id, sum(sum(i * i for i in range(n)) for n in numbers)]


@task
def trivial(x: int = 0) -> int:
    """Returns its argument: a task that is all overhead."""
    return x
