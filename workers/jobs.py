"""Submitting work to the nodes and reading it back: enqueue, wait with progress, results, status."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from tasks import cpu, registry
from tasks.batch import run_batch
from workers import defaults
from workers.errors import ConfigError, NotFound
from workers.heartbeat import read_nodes

DONE = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED)


def queue(client: redis.Redis, name: str) -> Queue:
    """An RQ queue using the JSON serializer (never pickle)."""
    return Queue(name, connection=client, serializer=JSONSerializer)


def sum_squares_expected(n: int) -> int:
    """Closed form of sum(i*i for i in range(n)), to check every result cheaply."""
    return (n - 1) * n * (2 * n - 1) // 6 if n > 0 else 0


def check_cpu_args(tasks: int, size: int, batch: int) -> None:
    if tasks < 1:
        raise ConfigError(f"--tasks must be >= 1, got {tasks}")
    if size < 0:
        raise ConfigError(f"--size must be >= 0, got {size}")
    if batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")


def enqueue_task_jobs(
    client: redis.Redis,
    queue_name: str,
    task: Callable[..., Any],
    arg_lists: list[list[Any]],
    batch: int,
    result_ttl: int = defaults.RESULT_TTL,
) -> tuple[list[Job], list[int]]:
    """Enqueue one job per argument list, or one batch job per `batch` of them, in one pipeline.

    Returns the jobs and how many tasks each carries.
    """
    q = queue(client, queue_name)
    name = registry.name_of(task)
    if batch <= 1:
        datas = [
            Queue.prepare_data(task, args=args, result_ttl=result_ttl, timeout=defaults.JOB_TIMEOUT)
            for args in arg_lists
        ]
        sizes = [1] * len(arg_lists)
    else:
        groups = [arg_lists[i : i + batch] for i in range(0, len(arg_lists), batch)]
        datas = [
            Queue.prepare_data(
                run_batch,
                args=(name, group),
                result_ttl=result_ttl,
                timeout=defaults.JOB_TIMEOUT,
                description=f"batch of {len(group)} x {name}",
            )
            for group in groups
        ]
        sizes = [len(g) for g in groups]
    with client.pipeline() as pipe:
        jobs = q.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    return jobs, sizes


def submit_cpu(client: redis.Redis, queue_name: str, tasks: int, size: int, batch: int) -> tuple[list[Job], list[int]]:
    """The chapter's CPU task, `tasks` times with n=`size`, as jobs on `queue_name`."""
    check_cpu_args(tasks, size, batch)
    return enqueue_task_jobs(client, queue_name, cpu.sum_squares, [[size]] * tasks, batch)


@dataclass
class Outcome:
    """What a set of jobs came to."""

    wall_s: float
    statuses: Counter[str] = field(default_factory=Counter)
    tasks_done: int = 0
    results: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def wait_for(
    client: redis.Redis,
    jobs: list[Job],
    sizes: list[int],
    *,
    timeout: float = 600,
    on_progress: Callable[[int, int], None] | None = None,
    poll: float = 0.05,
) -> Outcome:
    """Poll until every job has ended (or `timeout`); report finished tasks as they come in."""
    started = time.monotonic()
    total = sum(sizes)
    pending = {job.id: (job, n) for job, n in zip(jobs, sizes, strict=True)}
    ended: dict[str, str] = {}
    partial: dict[str, int] = {}
    while pending and time.monotonic() - started < timeout:
        ids = list(pending)
        with client.pipeline() as pipe:
            for job_id in ids:
                pipe.hmget(Job.key_for(job_id), "status", "meta")
            rows = pipe.execute()
        for job_id, (status, meta) in zip(ids, rows, strict=True):
            job, n = pending[job_id]
            state = status.decode() if status else "missing"
            if state in DONE or state == "missing":
                ended[job_id] = state
                partial[job_id] = n
                del pending[job_id]
            elif n > 1 and meta:
                progress = json.loads(meta).get("progress") or {}
                partial[job_id] = int(progress.get("done", 0))
        if on_progress:
            on_progress(sum(partial.values()), total)
        if pending:
            time.sleep(poll)
    outcome = Outcome(wall_s=time.monotonic() - started)
    for job_id in pending:
        ended[job_id] = "timeout"
    for job, n in zip(jobs, sizes, strict=True):
        state = ended[job.id]
        outcome.statuses[state] += 1
        if state == JobStatus.FINISHED:
            outcome.tasks_done += n
            outcome.results[job.id] = job.return_value(refresh=True)
        else:
            outcome.failures[job.id] = failure_reason(job) or state
    return outcome


def failure_reason(job: Job) -> str:
    """The last line of a failed job's error: the reason a user can read."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def summarize(outcome: Outcome, size: int) -> dict[str, Any]:
    """Per node/pid task counts, CPU time, and a check of every value against the closed form."""
    per_pid: Counter[str] = Counter()
    per_node: Counter[str] = Counter()
    cpu_s = 0.0
    wrong = 0
    expected = sum_squares_expected(size)
    for value in outcome.results.values():
        if "values" in value:  # a batch job
            wrong += sum(v != expected for v in value["values"])
            for pid, count in value["tasks_per_pid"].items():
                per_pid[f"{value['node'] or value['host']}:{pid}"] += count
            per_node[value["node"] or value["host"]] += value["count"]
        else:
            wrong += value["value"] != expected
            per_pid[f"{value['node'] or value['host']}:{value['pid']}"] += 1
            per_node[value["node"] or value["host"]] += 1
        cpu_s += value["cpu_s"]
    return {
        "wall_s": round(outcome.wall_s, 4),
        "tasks_done": outcome.tasks_done,
        "jobs": dict(outcome.statuses),
        "tasks_per_node": dict(per_node),
        "tasks_per_pid": dict(per_pid),
        "task_cpu_s": round(cpu_s, 4),
        "wrong_results": wrong,
        "failures": outcome.failures,
    }


def fetch_job(client: redis.Redis, job_id: str) -> Job:
    try:
        return Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    except NoSuchJobError:
        raise NotFound(f"no job with id {job_id!r}") from None


def job_report(client: redis.Redis, job_id: str) -> dict[str, Any]:
    """Status, timings and result or failure reason of one job."""
    job = fetch_job(client, job_id)
    status = job.get_status()
    report: dict[str, Any] = {
        "id": job.id,
        "status": str(status.value if status else "unknown"),
        "queue": job.origin,
        "description": job.description,
        "worker": job.worker_name,
        "enqueued_at": job.enqueued_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "meta": job.meta,
    }
    try:
        report["function"] = job.func_name
    except Exception:
        report["function"] = "<not JSON: refused>"
    if status == JobStatus.FINISHED:
        report["result"] = job.return_value()
    elif status == JobStatus.FAILED:
        report["reason"] = failure_reason(job)
    return report


def queue_status(client: redis.Redis, names: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        q = queue(client, name)
        rows.append(
            {
                "queue": name,
                "queued": q.count,
                "started": q.started_job_registry.count,
                "finished": q.finished_job_registry.count,
                "failed": q.failed_job_registry.count,
            }
        )
    return rows


def status(client: redis.Redis, names: tuple[str, ...]) -> dict[str, Any]:
    """Queues with counts per registry, nodes from their heartbeats, and RQ workers that are not ours."""
    nodes = read_nodes(client)
    ours = {slot for node in nodes for slot in _slots(node)}
    others = [w.name for w in SimpleWorker.all(connection=client) if w.name not in ours]
    return {"queues": queue_status(client, names), "nodes": nodes, "other_rq_workers": sorted(others)}


def _slots(node: dict[str, Any]) -> list[str]:
    try:
        return list(json.loads(node.get("slots", "[]")))
    except ValueError:
        return []
