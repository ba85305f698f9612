"""Transitional re-export: the job client is `workers.client`. Delete once compare/remote.py and
tests/test_node_integration.py use `workers.client` / `workers.submit`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from rq.job import Job

from tasks import registry
from workers import client, defaults
from workers.client import failure_reason
from workers.submit import submit_cpu, sum_squares_expected

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
