"""What happens to a job whose run was cut: re-queue it (counted), fail it as poison, or quarantine it.

Every run of a job is an RQ Execution (`job_id:execution_id` in the StartedJobRegistry). Whoever settles
a run first - the slot writing its result, or a node/sweeper re-queueing it - claims it with one
`SET NX` (`mplab:claim:JOB:EXECUTION`), so a run is settled once: a job re-queued by a sweeper is not
also finished by the slot it was taken from (one result per job, at-least-once execution).

A job popped by a slot that died before it registered the run is in no queue and no registry: after
every slot death a node scans for such jobs (`LostJobs`) and re-queues those still lost a moment later.

Counters in `job.meta` (kept across re-queues):
  interruptions   every reason the job was put back or failed by a node, oldest first
  deaths          runs cut because the node or slot running it died; POISON_LIMIT of them fail the job
  pool_deaths     batches whose Pool process died; the POOL_DEATH_LIMIT + 1st fails the batch
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from dataclasses import dataclass, field
from enum import StrEnum

import redis
from rq.exceptions import NoSuchJobError
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import as_text, now, str_to_date, utcformat
from rq.worker import SimpleWorker

from workers import defaults

log = logging.getLogger("mplab.recovery")

SLOT_NAME = re.compile(r"^(?P<node>.+)\.slot\d+$")
SETTLED = (JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED)


class Cut(StrEnum):
    """Why a run was cut; decides which counter it adds to."""

    DEATH = "deaths"  # the node or slot running it died
    POOL = "pool_deaths"  # a Pool process died under the batch
    STOP = "stops"  # the node was stopped (grace period over) or gone before the run began: not the job's fault


@dataclass(frozen=True)
class Outcome:
    """What `interrupt` did with one run."""

    job_id: str
    action: str  # "requeued", "failed", or "skipped" (already settled by someone else, or gone)
    reason: str


def slot_key(slot_name: str) -> str:
    return defaults.SLOT_KEY_PREFIX + slot_name


def claim_key(job_id: str, execution_id: str) -> str:
    return f"{defaults.CLAIM_KEY_PREFIX}{job_id}:{execution_id}"


def claim(client: redis.Redis, job_id: str, execution_id: str, owner: str) -> bool:
    """Settle one run of a job; True for its first claimant only (again True for it on a retry)."""
    key = claim_key(job_id, execution_id)
    if client.set(key, owner, nx=True, ex=defaults.CLAIM_TTL):
        return True
    held = client.get(key)
    return held is not None and as_text(held) == owner


def interrupt(client: redis.Redis, job_id: str, execution_id: str | None, reason: str, cut: Cut, owner: str) -> Outcome:
    """Put a cut run's job back at the front of its queue, or fail it once its counter is exhausted.

    Safe to call again after a Redis error part-way (the claim is `owner`'s, the status check skips a
    job already settled).
    """
    if execution_id is not None and not claim(client, job_id, execution_id, owner):
        return Outcome(job_id, "skipped", "already settled")
    try:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    except NoSuchJobError:
        return Outcome(job_id, "skipped", "job vanished")
    if job.get_status() in SETTLED:
        return Outcome(job_id, "skipped", "job already finished")
    run = execution_id or "queued:" + (job.enqueued_at.isoformat() if job.enqueued_at else "")
    counted: list[str] = job.meta.setdefault("counted_runs", [])
    fresh = run not in counted  # else a retry after a Redis error part-way: this run is counted already
    if not fresh and client.lpos(Queue(job.origin, connection=client).key, job_id) is not None:
        return Outcome(job_id, "requeued", reason)  # ...and back in its queue already
    count = int(job.meta.get(cut.value, 0)) + fresh
    if fresh:
        job.meta[cut.value] = count
        job.meta.setdefault("interruptions", []).append(reason)
        counted[:] = [*counted[-(defaults.POISON_LIMIT + defaults.POOL_DEATH_LIMIT + 4) :], run]
    job.meta.pop("progress", None)  # the cut run's; the next run reports its own
    limit = {Cut.DEATH: defaults.POISON_LIMIT, Cut.POOL: defaults.POOL_DEATH_LIMIT + 1}.get(cut)
    started = StartedJobRegistry(job.origin, connection=client)
    if limit is not None and count >= limit:
        what = "nodes or slots died" if cut is Cut.DEATH else "Pool processes died"
        final = f"failed: {count} runs of this job ended because {what} under it (limit {limit}); last: {reason}"
        job.save_meta()
        _fail(client, job, started, final)
        log.warning("job %s %s", job_id, final)
        return Outcome(job_id, "failed", final)
    job.meta["requeues"] = int(job.meta.get("requeues", 0)) + fresh
    job.save_meta()
    with client.pipeline() as pipe:
        for execution in job.get_executions():
            execution.delete(job, pipeline=pipe)
        started.remove_executions(job, pipeline=pipe)
        pipe.execute()
    failed = FailedJobRegistry(job.origin, connection=client, serializer=JSONSerializer)
    failed.add(job, exc_string=reason)
    failed.requeue(job, at_front=True)
    log.warning("re-queued job %s on %s (%s)", job_id, job.origin, reason)
    return Outcome(job_id, "requeued", reason)


def _fail(client: redis.Redis, job: Job, started: StartedJobRegistry, reason: str) -> None:
    """Fail `job` with `reason`: failed registry, status, and a failure Result (`mplab result` shows it)."""
    job.ended_at = now()
    with client.pipeline() as pipe:
        for execution in job.get_executions():
            execution.delete(job, pipeline=pipe)
        started.remove_executions(job, pipeline=pipe)
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(job.origin, connection=client, serializer=JSONSerializer).add(
            job, ttl=job.failure_ttl, exc_string=reason, pipeline=pipe
        )
        Result.create_failure(job, job.failure_ttl, exc_string=reason, pipeline=pipe)
        pipe.execute()


def sweep(client: redis.Redis, queues: tuple[str, ...], owner: str) -> list[Outcome]:
    """Re-queue every started job whose node's heartbeat key and slot's liveness key have both expired.

    Run on a timer by every live node. Jobs of workers that are not mplab slots (a stock `rq worker`)
    are left to RQ's own registry maintenance.
    """
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.zrange(StartedJobRegistry(queue, connection=client).key, 0, -1)
        entries = [e.decode() for rows in pipe.execute() for e in rows]
    runs = [tuple(e.split(":", 1)) for e in entries if ":" in e]
    if not runs:
        return []
    with client.pipeline(transaction=False) as pipe:
        for job_id, execution_id in runs:
            pipe.hget(f"rq:execution:{job_id}:{execution_id}", "worker_name")
        workers = [w.decode() if w else "" for w in pipe.execute()]
    candidates = [(run, w, m["node"]) for run, w in zip(runs, workers, strict=True) if (m := SLOT_NAME.match(w))]
    if not candidates:
        return []
    with client.pipeline(transaction=False) as pipe:
        for _run, worker, node in candidates:
            pipe.exists(defaults.NODE_KEY_PREFIX + node, slot_key(worker))
        alive = pipe.execute()
    outcomes = []
    for (run, worker, node), keys in zip(candidates, alive, strict=True):
        if keys == 0:
            reason = f"node {node} died (no heartbeat from it or its slot {worker} for {defaults.HEARTBEAT_TTL}s)"
            outcomes.append(interrupt(client, run[0], run[1], reason, Cut.DEATH, owner))
            bury(client, worker)
    return outcomes


def bury_dead_slots(client: redis.Redis) -> list[str]:
    """Bury the RQ records of slots whose liveness key and node's heartbeat have both expired (a node
    killed with everything in it); returns their names. Their runs are `sweep`'s; a job they had popped
    but not yet registered is `LostJobs`'."""
    prefix = SimpleWorker.redis_worker_namespace_prefix
    members = [m.decode() for m in client.smembers(SimpleWorker.redis_workers_keys)]  # type: ignore[union-attr]
    slots = [(n, m["node"]) for key in members if (m := SLOT_NAME.match(n := key.removeprefix(prefix)))]
    if not slots:
        return []
    with client.pipeline(transaction=False) as pipe:
        for name, node in slots:
            pipe.exists(defaults.NODE_KEY_PREFIX + node, slot_key(name))
        alive = pipe.execute()
    dead = [name for (name, _node), keys in zip(slots, alive, strict=True) if keys == 0]
    for name in dead:
        bury(client, name)
    return dead


LOST_CONFIRM_S = 1.5
"""How long a job must stay popped-but-unregistered to count as lost (a live slot registers it in ms)."""


@dataclass
class LostJobs:
    """Finds jobs popped by a slot that died before it registered the run, and re-queues them.

    Such a job has status `queued` but is in no queue list: RQ (and a stock worker) would lose it for
    good. After a slot death (`note_death`), `check` scans the job hashes once; candidates still lost
    `LOST_CONFIRM_S` later (a live slot in the same step has registered its job by then) are re-queued
    at the front, counted as a death (the poison limit applies). The scan walks every `rq:job:*` key:
    it runs only after a death.
    """

    scan_due: bool = False
    candidates: dict[str, tuple[str, float]] = field(default_factory=dict)  # job id -> (queue, seen at)

    def note_death(self) -> None:
        self.scan_due = True

    def check(self, client: redis.Redis, queues: tuple[str, ...], owner: str) -> list[Outcome]:
        outcomes = []
        now_m = time.monotonic()
        due = {j: q for j, (q, seen) in self.candidates.items() if now_m - seen >= LOST_CONFIRM_S}
        if due:
            for job_id, queue, enqueued_at in _unlisted(client, list(due.items())):
                reason = f"popped from {queue} by a slot that died before it could start the job"
                if claim(client, job_id, "lost:" + enqueued_at, owner):
                    outcomes.append(interrupt(client, job_id, None, reason, Cut.DEATH, owner))
            for job_id in due:
                del self.candidates[job_id]
        if self.scan_due:
            self.scan_due = False
            for job_id, queue in scan_unlisted(client, queues):
                self.candidates.setdefault(job_id, (queue, now_m))
        return outcomes


def scan_unlisted(client: redis.Redis, queues: tuple[str, ...]) -> list[tuple[str, str]]:
    """(job id, queue) of every job of `queues` whose status is `queued` but that is in no queue list."""
    listed: set[str] = set()
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            key = Queue(queue, connection=client).key
            pipe.lrange(key, 0, -1)
            pipe.lrange(IntermediateQueue.get_intermediate_queue_key(key), 0, -1)
        for ids in pipe.execute():
            listed.update(i.decode() for i in ids)
    prefix = Job.redis_job_namespace_prefix
    ids = [k.decode()[len(prefix) :] for k in client.scan_iter(match=prefix + "*", count=1000)]
    ids = [i for i in ids if ":" not in i and i not in listed]  # not rq:job:ID:dependents and the like
    found = []
    for start in range(0, len(ids), 1000):
        part = ids[start : start + 1000]
        with client.pipeline(transaction=False) as pipe:
            for job_id in part:
                pipe.hmget(Job.key_for(job_id), "status", "origin")
            rows = pipe.execute()
        for job_id, (status, origin) in zip(part, rows, strict=True):
            if status == JobStatus.QUEUED.value.encode() and origin and origin.decode() in queues:
                found.append((job_id, origin.decode()))
    return found


def _unlisted(client: redis.Redis, jobs: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(job id, queue, enqueued_at) of those of `jobs` still `queued` and still in neither their queue nor
    its intermediate list, in one round trip."""
    with client.pipeline(transaction=False) as pipe:
        for job_id, queue in jobs:
            key = Queue(queue, connection=client).key
            pipe.hmget(Job.key_for(job_id), "status", "enqueued_at")
            pipe.lpos(key, job_id)
            pipe.lpos(IntermediateQueue.get_intermediate_queue_key(key), job_id)
        rows = pipe.execute()
    out = []
    for i, (job_id, queue) in enumerate(jobs):
        (status, enqueued_at), in_queue, in_intermediate = rows[3 * i : 3 * i + 3]
        if status == JobStatus.QUEUED.value.encode() and in_queue is None and in_intermediate is None:
            out.append((job_id, queue, as_text(enqueued_at or b"")))
    return out


def bury(client: redis.Redis, worker: str) -> None:
    """Mark a dead slot's RQ worker record dead (`rq info` stops listing it; its name may be reused)."""
    with contextlib.suppress(Exception):
        found = SimpleWorker.find_by_key(SimpleWorker.redis_worker_namespace_prefix + worker, connection=client)
        if found is not None:
            found.register_death()


DATE_FIELDS = ("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")


def quarantine(client: redis.Redis, job_id: str, queue: str, error: BaseException) -> str:
    """Fail a job whose Redis hash RQ cannot read (e.g. `status=bogus`), naming the bad fields.

    The bad fields are overwritten (status `failed`, dates now) so RQ, `rq info` and `mplab result`
    can read the job again; the reason, with the original values, is its failure Result.
    """
    key = Job.key_for(job_id)
    raw = {k.decode(): v.decode(errors="replace") for k, v in client.hgetall(key).items()}  # type: ignore[union-attr]
    bad: list[str] = []
    fix: dict[str, str] = {"status": JobStatus.FAILED.value}
    if raw.get("status") not in {s.value for s in JobStatus}:
        bad.append(f"status={raw.get('status')!r}")
    for name in DATE_FIELDS:
        if raw.get(name):
            try:
                str_to_date(raw[name])
            except ValueError:
                bad.append(f"{name}={raw[name]!r}")
                fix[name] = utcformat(now())
    if not raw.get("origin"):
        fix["origin"] = queue
    detail = ", ".join(bad) or f"{type(error).__name__}: {error}"
    reason = f"failed: the job's Redis hash is corrupt ({detail}); it was never run"
    client.hset(key, mapping=fix)  # type: ignore[arg-type]
    try:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
        _fail(client, job, StartedJobRegistry(job.origin, connection=client), reason)
    except Exception:  # still unreadable: at least the failed registry and the hash say why
        client.hset(key, "exc_info", reason)
        failed = FailedJobRegistry(queue, connection=client)
        client.zadd(failed.key, {job_id: now().timestamp() + defaults.CLAIM_TTL})
    log.warning("job %s on %s: %s", job_id, queue, reason)
    return reason
