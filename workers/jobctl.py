"""Acting on jobs already in Redis: one job's report, lists by state, cancel, re-queue, purge.

Everything here reads and changes RQ's own structures (queues, registries, job hashes) through RQ's API,
so `rq info` and rq-dashboard see the same thing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import BaseRegistry
from rq.serializers import JSONSerializer

from workers import client as jobclient
from workers import defaults
from workers.errors import BadJob, ConfigError, NotFound

UNREADABLE = "unreadable"
"""The status shown for a job whose hash RQ cannot read."""

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""What a job id may look like (RQ's are 32 hex digits); anything else is a usage error, never a lookup."""


class State(StrEnum):
    """The job states `mplab jobs --status` can list (RQ's registries)."""

    queued = "queued"
    started = "started"
    finished = "finished"
    failed = "failed"
    deferred = "deferred"
    scheduled = "scheduled"
    canceled = "canceled"


def check_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise ConfigError(f"bad job id {job_id[:80]!r}: letters, digits and _ . : - only (as printed by submit)")
    return job_id


@dataclass(frozen=True)
class Progress:
    """Tasks done out of total, for a batch job (from `job.meta["progress"]`, written by the node)."""

    done: int
    total: int


@dataclass(frozen=True)
class JobReport:
    """One job as `mplab result` shows it."""

    id: str
    status: str
    function: str
    queue: str
    description: str
    worker: str | None
    enqueued_at: str | None
    started_at: str | None
    ended_at: str | None
    progress: Progress | None = None
    result: jobclient.JsonValue = None
    reason: str = ""
    traceback: str | None = None
    retries_left: int | None = None
    interruptions: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in (JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value, UNREADABLE)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _function(job: Job) -> str:
    """The job's function; for a batch job, what the batch carries (e.g. 'batch of 4 x tasks.cpu.sum_squares')."""
    try:
        name = job.func_name or ""
    except Exception:  # noqa: BLE001 - a pickled or corrupt payload: say so instead of failing
        return "<not JSON: refused>"
    return job.description or name if name == jobclient.BATCH_FUNCTION else name


def _raw_status(client: redis.Redis, job_id: str) -> str:
    raw = client.hget(Job.key_for(job_id), "status")
    return raw.decode(errors="replace") if isinstance(raw, bytes) else "unknown"


def _progress(job: Job) -> Progress | None:
    done, total = jobclient.progress_of(job.meta)
    tasks = int(job.meta.get("tasks", 0) or 0) if isinstance(job.meta, dict) else 0
    if not total and not tasks:
        return None
    return Progress(done, total or tasks)


def job_report(client: redis.Redis, job_id: str, *, traceback: bool = False) -> JobReport:
    """Status, timings, progress, and the result or failure reason (with `traceback`, the whole error)."""
    check_job_id(job_id)
    try:
        job = jobclient.fetch_job(client, job_id)
    except BadJob as exc:  # shown as what it is, with the reason, instead of crashing
        return JobReport(job_id, UNREADABLE, "?", "?", "", None, None, None, None, reason=str(exc))
    status = _raw_status(client, job_id)
    report = JobReport(
        id=job.id,
        status=status,
        function=_function(job),
        queue=job.origin,
        description=job.description or "",
        worker=job.worker_name,
        enqueued_at=_iso(job.enqueued_at),
        started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at),
        progress=_progress(job),
        retries_left=job.retries_left,
        interruptions=[str(x) for x in job.meta.get("interruptions", [])] if isinstance(job.meta, dict) else [],
    )
    if status == JobStatus.FINISHED.value:
        return replace(report, result=job.return_value())
    if report.failed or job.retries_left is not None:
        text = jobclient.failure_text(job)
        if text:
            reason = jobclient.last_line(text) or status
            return replace(report, reason=reason, traceback=text if traceback else None)
    return report


# -- lists ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRow:
    """One line of `mplab jobs`."""

    id: str
    status: str
    queue: str
    function: str
    enqueued_at: str | None
    ended_at: str | None
    reason: str = ""


def known_queues(client: redis.Redis, configured: tuple[str, ...]) -> list[str]:
    """The configured queues, then every other queue RQ knows of in this Redis."""
    others = sorted(q.name for q in Queue.all(connection=client, serializer=JSONSerializer))
    return list(configured) + [name for name in others if name not in configured]


def _registry(q: Queue, state: State) -> BaseRegistry | None:
    return {
        State.started: q.started_job_registry,
        State.finished: q.finished_job_registry,
        State.failed: q.failed_job_registry,
        State.deferred: q.deferred_job_registry,
        State.scheduled: q.scheduled_job_registry,
        State.canceled: q.canceled_job_registry,
    }.get(state)


def ids_in(client: redis.Redis, queue_name: str, state: State, limit: int) -> list[str]:
    """Up to `limit` job ids of one queue in one state (newest first for registries)."""
    q = jobclient.queue(client, queue_name)
    if state == State.queued:
        return list(q.get_job_ids(0, limit - 1))
    reg = _registry(q, state)
    assert reg is not None
    return list(dict.fromkeys(reg.get_job_ids(0, limit - 1, desc=True)))


def list_jobs(
    client: redis.Redis, queues: list[str], states: list[State], limit: int = 50, *, reasons: bool = True
) -> list[JobRow]:
    """Jobs of `queues` in `states`, at most `limit`; failed ones with the last line of their error."""
    if not 1 <= limit <= defaults.MAX_LIST:
        raise ConfigError(f"--limit must be >= 1 and <= {defaults.MAX_LIST}, got {limit}")
    wanted: list[tuple[str, str]] = []
    for state in states:
        for name in queues:
            wanted += [(job_id, name) for job_id in ids_in(client, name, state, limit - len(wanted))]
            if len(wanted) >= limit:
                break
        if len(wanted) >= limit:
            break
    rows = []
    for job_id, name in wanted:
        try:
            job = jobclient.fetch_job(client, job_id)
        except NotFound:  # expired between listing and reading
            continue
        except BadJob as exc:
            rows.append(JobRow(job_id, UNREADABLE, name, "?", None, None, str(exc)))
            continue
        status = _raw_status(client, job_id)
        reason = jobclient.failure_reason(job) if reasons and status == JobStatus.FAILED.value else ""
        rows.append(JobRow(job_id, status, name, _function(job), _iso(job.enqueued_at), _iso(job.ended_at), reason))
    return rows


# -- actions ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    """What happened to one job id given to cancel / requeue."""

    id: str
    done: bool
    note: str


def _each(client: redis.Redis, job_ids: list[str], act: Callable[[Job, str], Action]) -> list[Action]:
    """Apply `act(job, status)` to each id; ids that are unknown, unreadable or refused by RQ say why."""
    out = []
    for job_id in map(check_job_id, job_ids):
        try:
            job = jobclient.fetch_job(client, job_id)
        except (NotFound, BadJob) as exc:
            out.append(Action(job_id, False, str(exc)))
            continue
        try:
            out.append(act(job, _raw_status(client, job_id)))
        except (InvalidJobOperation, NoSuchJobError) as exc:
            out.append(Action(job_id, False, f"refused by RQ: {exc}"))
    return out


def _cancel_one(job: Job, status: str) -> Action:
    if status not in (JobStatus.QUEUED.value, JobStatus.DEFERRED.value, JobStatus.SCHEDULED.value):
        why = "it is running (a node finishes it)" if status == JobStatus.STARTED.value else f"it is {status}"
        return Action(job.id, False, f"not canceled: {why}")
    job.cancel()
    return Action(job.id, True, f"canceled (was {status})")


def _requeue_one(job: Job, status: str) -> Action:
    q = jobclient.queue(job.connection, job.origin)
    registry = {
        JobStatus.FAILED.value: q.failed_job_registry,
        JobStatus.CANCELED.value: q.canceled_job_registry,
        JobStatus.STOPPED.value: q.failed_job_registry,
    }.get(status)
    if registry is None:
        return Action(job.id, False, f"not re-queued: it is {status} (only failed, stopped, canceled)")
    registry.requeue(job)
    return Action(job.id, True, f"re-queued on {job.origin!r} (was {status})")


def cancel(client: redis.Redis, job_ids: list[str]) -> list[Action]:
    """Cancel jobs that have not started (queued, deferred, scheduled): they leave their queue, never run."""
    return _each(client, job_ids, _cancel_one)


def requeue(client: redis.Redis, job_ids: list[str]) -> list[Action]:
    """Put failed (or canceled / stopped) jobs back on their queue, at the back."""
    return _each(client, job_ids, _requeue_one)


def requeue_failed(client: redis.Redis, queues: list[str]) -> list[Action]:
    """Re-queue every failed job of `queues`."""
    ids: list[str] = []
    for name in queues:
        ids += ids_in(client, name, State.failed, defaults.MAX_LIST)
    return requeue(client, ids)


def queued(client: redis.Redis, queue_name: str) -> int:
    """How many jobs wait in one queue."""
    return int(jobclient.queue(client, queue_name).count)


def purge(client: redis.Redis, queue_name: str) -> int:
    """Delete every queued job of one queue (and the jobs themselves); how many there were."""
    return int(jobclient.queue(client, queue_name).empty())
