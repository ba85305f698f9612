"""Helpers of the node chaos tests: waiting, exactly-once checks, process trees."""

from __future__ import annotations

import contextlib
import time

import psutil
from rq import Queue
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from workers import submit

SIZE = 3_000_000  # one task: ~0.15-0.5 s of CPU


def wait_until(predicate, timeout=30.0, step=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what} not met within {timeout}s")


def finished_once(client, job_ids) -> bool:
    """Every job has status finished (`assert_one_result_each` then checks its results)."""
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
        if job.get_status() != JobStatus.FINISHED:
            return False
    return True


def assert_one_result_each(client, job_ids, size=SIZE):
    expected = submit.sum_squares_expected(size)
    for job_id in job_ids:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
        assert [r.type for r in job.results()] == [Result.Type.SUCCESSFUL], (job_id, job.meta)
        value = job.return_value()
        assert value.get("values", [value.get("value")]) == [expected] * len(value.get("values", [0]))


def tree(proc) -> list[psutil.Process]:
    return psutil.Process(proc.pid).children(recursive=True)


def running(proc: psutil.Process) -> bool:
    """Not exited: zombies have (their parent has yet to reap them), so they count as gone."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_gone(procs, timeout=10.0):
    """The processes exit by themselves within `timeout`; any straggler is killed and reported.

    Polled: psutil.wait_procs on processes that are not our children backs off to a second per check."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in procs if running(p)]) and time.monotonic() < deadline:
        time.sleep(0.02)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not alive, f"left running: {alive}"


def started_on(client, queue, node) -> list[str]:
    registry = Queue(queue, connection=client).started_job_registry
    ids = []
    for job_id in registry.get_job_ids(cleanup=False):
        worker = client.hget(f"rq:job:{job_id}", "worker_name") or b""
        if worker.decode().startswith(node + "."):
            ids.append(job_id)
    return ids
