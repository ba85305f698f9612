"""Transitional: the old `workers.jobs` names over the job client (`workers.client`, `workers.submit`).

Still imported by workers/compare/remote.py, workers/netcost.py, benchmarks/enqueue.py, tests/chaos_tools.py,
tests/test_node_chaos.py, tests/test_node_integration.py and tests/test_compare_run.py; delete it once they
call `workers.client` / `workers.submit` directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from rq.job import Job

from tasks import registry
from workers import client, defaults, submit
from workers.client import failure_reason
from workers.submit import sum_squares_expected

__all__ = ["enqueue_task_jobs", "failure_reason", "submit_cpu", "sum_squares_expected"]


def enqueue_task_jobs(
    conn: redis.Redis,
    queue_name: str,
    task: Callable[..., Any],
    arg_lists: list[list[Any]],
    batch: int,
    result_ttl: int = defaults.RESULT_TTL,
) -> tuple[list[Job], list[int]]:
    """Old signature of `client.enqueue_many(conn, q, client.task_calls(...))`: (jobs, tasks per job)."""
    calls = client.task_calls(registry.name_of(task), arg_lists, max(batch, 1))
    jobs = client.enqueue_many(conn, queue_name, calls, client.JobOptions(result_ttl=result_ttl))
    return jobs, [call.tasks for call in calls]


def submit_cpu(conn: redis.Redis, queue_name: str, tasks: int, size: int, batch: int) -> tuple[list[Job], list[int]]:
    """Old signature of `workers.submit.submit_cpu`: (jobs, tasks per job)."""
    jobs = submit.submit_cpu(conn, queue_name, tasks, size, batch)
    return jobs, [int(job.meta.get("tasks", 1)) for job in jobs]
