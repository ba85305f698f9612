"""What comes back from a job: its latest result, the job's own timestamps, failure reasons and tracebacks.

Part of the job client: import it through `workers.client`, which re-exports everything here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

import redis
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

JsonValue: TypeAlias = Any
"""A value as JSON carries it to or from a job (arguments, return value): its task knows the shape, mypy cannot."""

FINISHED_STATES: frozenset[str] = frozenset(
    {JobStatus.FINISHED.value, JobStatus.FAILED.value, JobStatus.STOPPED.value, JobStatus.CANCELED.value}
)
"""Job states RQ never leaves by itself: a waiter stops waiting for a job in one of these."""


def failure_text(job: Job) -> str:
    """The full error (traceback) of a failed job, or ''."""
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or job.exc_info or ""
    return text.strip()


def last_line(text: str) -> str:
    """The last non-blank line of an error: the reason a user can read."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def failure_reason(job: Job) -> str:
    """The last line of a failed job's error."""
    return last_line(failure_text(job))


def _stamp(raw: bytes | None) -> float | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw.decode().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class JobResult:
    """One job as it came back: its state, its value or failure reason, and when it ran (epoch seconds)."""

    id: str
    status: str
    value: JsonValue = None
    reason: str = ""
    enqueued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == JobStatus.FINISHED.value


def fetch_results(client: redis.Redis, ids: Sequence[str]) -> list[JobResult]:
    """The latest result and timestamps of each job, in order, in one pipelined round trip."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.xrevrange(Result.get_key(job_id), "+", "-", count=1)
            pipe.hmget(Job.key_for(job_id), "status", "enqueued_at", "started_at", "ended_at", "exc_info")
        rows = pipe.execute()
    out = []
    for job_id, stream, fields in zip(ids, rows[::2], rows[1::2], strict=True):
        status = fields[0].decode() if fields[0] else "missing"
        value, reason = None, ""
        if stream:
            result_id, payload = stream[0]
            result = Result.restore(job_id, result_id.decode(), payload, client, serializer=JSONSerializer)
            if result.type == Result.Type.SUCCESSFUL:
                value = result.return_value
            else:
                reason = last_line(result.exc_string or "") or result.type.name.lower()
        if status != JobStatus.FINISHED.value and not reason and status in FINISHED_STATES:
            reason = status
        stamps = [_stamp(v) for v in fields[1:4]]
        out.append(JobResult(job_id, status, value, reason, *stamps))
    return out
