"""The one way out and back for a job: enqueue on a JSON queue, wait for it, read its result or failure.

Every caller that submits RQ jobs uses this module (rq's `queue.py` + `job.py` are the model):

    calls = client.task_calls("tasks.cpu.sum_squares", [[n]] * 8, batch=4)      # what to run
    jobs = client.enqueue_many(conn, "default", calls, client.JobOptions(retry=2))
    done = client.wait(conn, jobs, timeout=600, on_progress=lambda d, t: ...)   # one waiter
    done.results / done.failures / client.fetch_results(conn, ids)              # what came back

The waiter polls with short commands (never a blocking read), so no socket timeout can be shorter than the
wait; a lost connection (a Redis restart, a blip) is retried with bounded backoff until the deadline.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
from redis.client import Pipeline
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, Retry
from rq.queue import EnqueueData, Queue
from rq.serializers import JSONSerializer

from workers import defaults
from workers.errors import BadJob, ConfigError, JobFailed, JobTimeout, NotFound, PayloadTooLarge, RedisUnavailable
from workers.results import (
    FINISHED_STATES,
    JobResult,
    JsonValue,
    failure_reason,
    failure_text,
    fetch_results,
    last_line,
)

__all__ = [
    "FINISHED_STATES", "BATCH_FUNCTION", "LOST", "Call", "JobOptions", "JobOutcome", "JobResult", "JsonValue",
    "Outcome", "ended_count", "enqueue", "enqueue_many", "failure_reason", "failure_text", "fetch_job", "fetch_results",
    "last_line", "progress_of", "promote_due", "queue", "run", "states", "task_calls", "wait",
]  # fmt: skip

BATCH_FUNCTION = "tasks.batch.run_batch"
"""The registered job function that fans a batch of task calls out on a node's Pool."""

LOST = (redis.ConnectionError, redis.TimeoutError, OSError)
"""What a lost or restarting Redis raises; the waiter retries these until its deadline."""

BACKOFF_MAX = 2.0
"""Longest pause, in seconds, between two attempts to reach a lost Redis while waiting."""


def queue(client: redis.Redis, name: str) -> Queue:
    """An RQ queue using the JSON serializer (never pickle)."""
    return Queue(name, connection=client, serializer=JSONSerializer)


def fetch_job(client: redis.Redis, job_id: str) -> Job:
    """The job `job_id`; NotFound if it does not exist, BadJob if RQ cannot read its hash."""
    try:
        return Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    except NoSuchJobError:
        raise NotFound(f"no job with id {job_id!r}") from None
    except redis.RedisError:
        raise
    except Exception as exc:  # noqa: BLE001 - a field RQ cannot parse (e.g. created_at=yesterday)
        raise BadJob(f"job {job_id} has a hash RQ cannot read: {type(exc).__name__}: {exc}") from None


# -- what to run, and how ----------------------------------------------------------------------------
def _check_range(what: str, value: float, low: float, high: float) -> None:
    if not (low <= value <= high):  # False for NaN too
        raise ConfigError(f"{what} must be >= {low:g} and <= {high:g}, got {value}")


@dataclass(frozen=True)
class JobOptions:
    """How RQ treats the jobs of one submit: timeout, how long results live, automatic retries."""

    job_timeout: int = defaults.JOB_TIMEOUT
    result_ttl: int = defaults.RESULT_TTL
    retry: int = 0
    """Automatic retries of a failed job (0: none)."""
    retry_interval: int = 0
    """Seconds between retries (0: re-queued at once)."""

    def __post_init__(self) -> None:
        _check_range("--job-timeout", self.job_timeout, 1, defaults.MAX_JOB_TIMEOUT)
        _check_range("--result-ttl", self.result_ttl, 1, defaults.MAX_RESULT_TTL)
        _check_range("--retry", self.retry, 0, defaults.MAX_RETRIES)
        _check_range("--retry-interval", self.retry_interval, 0, defaults.MAX_RETRY_INTERVAL)

    def rq_retry(self) -> Retry | None:
        return Retry(max=self.retry, interval=self.retry_interval) if self.retry else None


@dataclass(frozen=True)
class Call:
    """One job to enqueue: a registered function name, its JSON-able arguments, and how many tasks it carries."""

    func: str
    args: Sequence[JsonValue] = ()
    kwargs: Mapping[str, JsonValue] = field(default_factory=dict)
    description: str | None = None
    tasks: int = 1


def task_calls(task: str, arg_lists: Sequence[Sequence[JsonValue]], batch: int) -> list[Call]:
    """One call per argument list, or one batch call (run on a node's Pool) per `batch` of them."""
    _check_range("--batch", batch, 1, defaults.MAX_BATCH_ITEMS)
    if batch <= 1:
        return [Call(task, list(args)) for args in arg_lists]
    groups = [[list(a) for a in arg_lists[i : i + batch]] for i in range(0, len(arg_lists), batch)]
    return [
        Call(BATCH_FUNCTION, [task, group], description=f"batch of {len(group)} x {task}", tasks=len(group))
        for group in groups
    ]


def _prepare(call: Call, options: JobOptions) -> EnqueueData:
    payload = len(json.dumps([list(call.args), call.kwargs]))
    if payload > defaults.MAX_PAYLOAD_BYTES:
        raise PayloadTooLarge(f"a job's arguments take {payload} bytes; the limit is {defaults.MAX_PAYLOAD_BYTES}")
    if call.func == BATCH_FUNCTION and len(call.args) > 1 and len(call.args[1]) > defaults.MAX_BATCH_ITEMS:
        raise PayloadTooLarge(f"a batch carries {len(call.args[1])} items; the limit is {defaults.MAX_BATCH_ITEMS}")
    return Queue.prepare_data(
        call.func,
        args=list(call.args),
        kwargs=dict(call.kwargs),
        timeout=options.job_timeout,
        result_ttl=options.result_ttl,
        description=call.description,
        retry=options.rq_retry(),
        meta={"tasks": call.tasks} if call.tasks > 1 else None,
    )


def enqueue_many(
    client: redis.Redis,
    queue_name: str,
    calls: Sequence[Call],
    options: JobOptions | None = None,
    *,
    also: Callable[[Pipeline, list[Job]], object] | None = None,
) -> list[Job]:
    """Enqueue all `calls` in one pipeline (one round trip); `also(pipe, jobs)` may add commands to it."""
    options = options or JobOptions()
    datas = [_prepare(call, options) for call in calls]  # every limit is checked before anything is sent
    q = queue(client, queue_name)
    with client.pipeline() as pipe:
        jobs: list[Job] = q.enqueue_many(datas, pipeline=pipe)
        if also is not None:
            also(pipe, jobs)
        pipe.execute()
    return jobs


def enqueue(client: redis.Redis, queue_name: str, call: Call, options: JobOptions | None = None) -> Job:
    """Enqueue one call."""
    return enqueue_many(client, queue_name, [call], options)[0]


# -- the one waiter ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobOutcome:
    """How one waited-for job ended: a finished state, 'missing' (its hash is gone) or 'timeout'."""

    id: str
    status: str
    tasks: int
    value: JsonValue = None
    reason: str = ""
    result: JobResult | None = None
    """Its latest result with the job's own timestamps (None for 'timeout' and 'missing')."""


@dataclass(frozen=True)
class Outcome:
    """What a set of jobs came to."""

    wall_s: float
    jobs: list[JobOutcome]

    @property
    def statuses(self) -> Counter[str]:
        return Counter(job.status for job in self.jobs)

    @property
    def tasks_done(self) -> int:
        return sum(job.tasks for job in self.jobs if job.status == JobStatus.FINISHED.value)

    @property
    def results(self) -> dict[str, JsonValue]:
        return {job.id: job.value for job in self.jobs if job.status == JobStatus.FINISHED.value}

    @property
    def failures(self) -> dict[str, str]:
        return {job.id: job.reason or job.status for job in self.jobs if job.status != JobStatus.FINISHED.value}

    @property
    def timed_out(self) -> bool:
        return any(job.status == "timeout" for job in self.jobs)

    def values(self) -> list[JsonValue]:
        """The task values of every finished job in submission order (a batch's values flattened)."""
        out: list[JsonValue] = []
        for job in self.jobs:
            if job.status == JobStatus.FINISHED.value and isinstance(job.value, dict):
                out.extend(job.value["values"] if "values" in job.value else [job.value.get("value")])
        return out

    def check(self) -> Outcome:
        """Self, or JobTimeout / JobFailed naming the first job that did not finish."""
        for job in self.jobs:
            if job.status == "timeout":
                raise JobTimeout(f"job {job.id} had not ended after {self.wall_s:.0f} s (are nodes running?)")
        for job in self.jobs:
            if job.status != JobStatus.FINISHED.value:
                raise JobFailed(f"job {job.id} {job.status}: {job.reason or job.status}")
        return self


def states(client: redis.Redis, ids: Sequence[str]) -> dict[str, str]:
    """Each job's status in one pipelined round trip ('missing' when its hash is gone)."""
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), "status")
        raw = pipe.execute()
    return {job_id: value.decode() if value else "missing" for job_id, value in zip(ids, raw, strict=True)}


def _poll(client: redis.Redis, pending: dict[str, int]) -> tuple[dict[str, str], dict[str, int]]:
    """States of the pending jobs that ended, and tasks done so far of batch jobs still running."""
    ids = list(pending)
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), "status", "meta")
        rows = pipe.execute()
    ended: dict[str, str] = {}
    partial: dict[str, int] = {}
    for job_id, (status, meta) in zip(ids, rows, strict=True):
        state = status.decode() if status else "missing"
        if state in FINISHED_STATES or state == "missing":
            ended[job_id] = state
        elif pending[job_id] > 1 and meta:
            partial[job_id] = progress_of(meta)[0]
    return ended, partial


def ended_count(client: redis.Redis, queue_name: str) -> int:
    """Jobs in the queue's finished + failed registries (two ZCARDs): a cheap "have they all ended?" probe."""
    q = queue(client, queue_name)
    with client.pipeline(transaction=False) as pipe:
        pipe.zcard(q.finished_job_registry.key)
        pipe.zcard(q.failed_job_registry.key)
        finished, failed = pipe.execute()
    return int(finished) + int(failed)


def progress_of(meta: bytes | str | Mapping[str, object] | None) -> tuple[int, int]:
    """(done, total) from a job's meta (a node writes `progress` for batch jobs); (0, 0) if absent or unreadable."""
    try:
        data = json.loads(meta) if isinstance(meta, bytes | str) else meta
        progress = data.get("progress") if isinstance(data, Mapping) else None
        if not isinstance(progress, Mapping):
            return 0, 0
        return int(progress.get("done", 0)), int(progress.get("total", 0))
    except (ValueError, TypeError):
        return 0, 0


def wait(
    client: redis.Redis,
    jobs: Iterable[Job | str],
    sizes: Sequence[int] | None = None,
    *,
    timeout: float = defaults.WAIT_TIMEOUT,
    on_progress: Callable[[int, int], None] | None = None,
    poll: float = 0.05,
    ended_since: tuple[str, int] | None = None,
) -> Outcome:
    """Wait until every job has ended or `timeout` seconds passed; report tasks done as they come in.

    `sizes` is how many tasks each job carries (default: 1, or the `tasks` a batch job was enqueued with).
    `ended_since=(queue, ended_count before the enqueue)`, for jobs all on one queue: between full sweeps
    (every 0.1 s) each poll reads only two counters, so a fine `poll` (measurements) costs Redis little.
    Jobs still running at the deadline are reported as 'timeout' (`Outcome.check()` raises JobTimeout).
    A lost Redis is retried with bounded backoff; still lost at the deadline, RedisUnavailable is raised.
    """
    _check_range("--timeout", timeout, 0, defaults.MAX_WAIT)
    ids = [job if isinstance(job, str) else job.id for job in jobs]
    if sizes is None:
        sizes = [int(job.meta.get("tasks", 1)) if isinstance(job, Job) else 1 for job in jobs]
    size_of = dict(zip(ids, sizes, strict=True))
    started = time.monotonic()
    deadline = started + timeout
    pending = dict(size_of)
    ended: dict[str, str] = {}
    partial: dict[str, int] = {}
    backoff, lost_since = 0.1, 0.0
    queues = None
    next_promote = started + 1.0
    next_sweep = started
    while pending:
        try:
            if ended_since is not None and time.monotonic() < next_sweep:
                if ended_count(client, ended_since[0]) - ended_since[1] < len(ids):
                    time.sleep(poll)
                    continue
            next_sweep = time.monotonic() + 0.1
            now_ended, now_partial = _poll(client, pending)
            if time.monotonic() >= next_promote:  # retries with an interval wait in the scheduled registry
                queues = queues or _origins(client, list(pending))
                promote_due(client, queues)
                next_promote = time.monotonic() + 1.0
        except LOST as exc:
            lost_since = lost_since or time.monotonic()
            if time.monotonic() + backoff > deadline:
                raise RedisUnavailable(
                    f"lost Redis for {time.monotonic() - lost_since:.0f} s while waiting: {exc} "
                    "(the jobs may still finish: see `mplab jobs`)"
                ) from None
            time.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        backoff, lost_since = 0.1, 0.0
        for job_id, state in now_ended.items():
            ended[job_id] = state
            del pending[job_id]
            partial[job_id] = size_of[job_id]
        partial.update(now_partial)
        if on_progress is not None:
            on_progress(sum(partial.values()), sum(size_of.values()))
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(max(poll, 1e-5 * len(pending)))  # 100k pending jobs: one sweep a second, not 20
    wall = time.monotonic() - started
    ended.update({job_id: "timeout" for job_id in pending})
    finished = [job_id for job_id in ids if ended[job_id] in FINISHED_STATES]
    results = {r.id: r for r in fetch_results(client, finished)} if finished else {}
    outcomes = []
    for job_id in ids:
        got = results.get(job_id)
        reason = got.reason if got else ("" if ended[job_id] == "timeout" else "its job hash is gone")
        outcomes.append(JobOutcome(job_id, ended[job_id], size_of[job_id], got.value if got else None, reason, got))
    return Outcome(wall, outcomes)


def run(
    client: redis.Redis, queue_name: str, call: Call, options: JobOptions | None = None, *, timeout: float
) -> JsonValue:
    """Enqueue one call, wait for it, return its value; JobTimeout or JobFailed (with the reason) otherwise."""
    job = enqueue(client, queue_name, call, options)
    return wait(client, [job], timeout=timeout).check().jobs[0].value


def _origins(client: redis.Redis, ids: list[str]) -> list[str]:
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hget(Job.key_for(job_id), "origin")
        return sorted({o.decode() for o in pipe.execute() if o})


def promote_due(client: redis.Redis, queue_names: Iterable[str]) -> int:
    """Move jobs whose scheduled time has come (retries with an interval) onto their queue; how many moved.

    RQ leaves this to a scheduler process; a node (or a waiter) calls this instead, and it is idempotent.
    """
    moved = 0
    for name in queue_names:
        q = queue(client, name)
        registry = q.scheduled_job_registry
        for job_id in registry.get_jobs_to_schedule(int(time.time())):
            if not client.zrem(registry.key, job_id):  # another caller took it: each job moves once
                continue
            try:
                job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
            except NoSuchJobError:
                continue
            q._enqueue_job(job)
            moved += 1
    return moved
