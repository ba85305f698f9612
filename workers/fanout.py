"""The node's batch desk: batches handed over by slots, fanned out on the warm Pool, until each is answered.

The slot↔node protocol over each slot's Pipe: a slot sends a `BatchRequest`; a batch ends with exactly
one `Reply` to its slot, tagged with the job id: `done` (the merged result), `error` (a task raised), or
`requeue` (a Pool process died under it: the slot re-queues the job). A slot that gives up on a batch
(its job timed out, or it is stopping) sends `Cancel`.

multiprocessing.Pool cannot cancel work: its queued chunks run to the end, and a process killed while
waiting for work leaves the task queue locked. So cancelling a batch, or losing a Pool process,
replaces the whole Pool at once; the other batches in flight are submitted again to the new one
(from scratch: they have not been answered, so nothing is counted twice).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Literal

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from tasks.batch import BatchResult
from workers import defaults
from workers.pool import BatchPool

log = logging.getLogger("mplab.node")


@dataclass(frozen=True)
class BatchRequest:
    """Slot → node: run this batch job's items on the Pool."""

    job_id: str
    task: str
    items: list[list[Any]]
    chunksize: int


@dataclass(frozen=True)
class Cancel:
    """Slot → node: this batch was given up (its timeout, or the slot is stopping); stop its Pool work."""

    job_id: str


@dataclass(frozen=True)
class Reply:
    """Node → slot: how a batch ended; `result` when done, `reason` otherwise."""

    kind: Literal["done", "error", "requeue"]
    job_id: str
    result: BatchResult | None = None
    reason: str = ""


@dataclass
class Batch:
    """One batch in flight and where its answer goes."""

    job_id: str
    task: str
    items: list[list[Any]]
    chunksize: int
    conn: Connection
    job: Job | None  # for progress in job.meta; None if Redis could not be read when it arrived
    done: int = 0
    written: float = 0.0


class Fanout:
    """Batches in flight on one node's Pool (replaced when it cannot be trusted any more)."""

    def __init__(self, make_pool: Callable[[], BatchPool], client: redis.Redis, node: str) -> None:
        self.make_pool = make_pool
        self.client = client
        self.node = node
        self.pool = make_pool()
        self.pids = set(self.pool.pids())
        self.batches: dict[str, Batch] = {}
        self.lock = threading.Lock()  # the Pool's result thread answers batches too
        self.running_on: dict[int, str] = {}  # Pool pid -> job id of the chunk it last started
        self.redis_down = False  # set by the node: no progress writes while Redis is unreachable

    @property
    def reader(self) -> Any:
        """What the node waits on for progress reports (changes when the Pool is replaced)."""
        return self.pool.progress._reader  # type: ignore[attr-defined]

    # -- from slots ----------------------------------------------------------------------------------
    def handle(self, conn: Connection, message: object) -> None:
        if isinstance(message, Cancel):
            self.cancel(message.job_id)
            return
        if not isinstance(message, BatchRequest):
            log.warning("node %s: unknown message from a slot: %s", self.node, type(message).__name__)
            return
        job = None
        with contextlib.suppress(Exception):  # progress is best effort: a batch runs during an outage too
            job = Job.fetch(message.job_id, connection=self.client, serializer=JSONSerializer)
        batch = Batch(message.job_id, message.task, message.items, message.chunksize, conn, job)
        with self.lock:
            self.batches[batch.job_id] = batch
        self._write_progress(batch, force=True)
        self._submit(batch)

    def _submit(self, batch: Batch) -> None:
        try:
            self.pool.submit(
                batch.job_id, batch.task, batch.items, batch.chunksize,
                lambda result: self._reply(batch, Reply("done", batch.job_id, result=result)),
                lambda exc: self._reply(batch, Reply("error", batch.job_id, reason=f"{type(exc).__name__}: {exc}")),
            )  # fmt: skip
        except Exception as exc:  # e.g. an unpicklable argument: fail this batch, not the node
            self._reply(batch, Reply("error", batch.job_id, reason=f"{type(exc).__name__}: {exc}"))

    def _reply(self, batch: Batch, reply: Reply) -> None:
        with self.lock:
            if self.batches.get(batch.job_id) is not batch:
                return  # cancelled, or answered already
            del self.batches[batch.job_id]
        with contextlib.suppress(OSError):
            batch.conn.send(reply)

    def cancel(self, job_id: str) -> None:
        """The slot gave up on this batch (timeout or stop): stop its Pool work now."""
        with self.lock:
            batch = self.batches.pop(job_id, None)
        if batch is not None:
            log.warning("node %s: batch %s abandoned by its slot; stopping its Pool work", self.node, job_id)
            self._replace_pool(culprits=set(), reason="")

    def forget(self, conn: Connection) -> None:
        """A slot died: stop the Pool work of its batches (they are re-queued from its RQ record)."""
        with self.lock:
            orphans = [b.job_id for b in self.batches.values() if b.conn is conn]
        for job_id in orphans:
            self.cancel(job_id)

    # -- Pool health -----------------------------------------------------------------------------------
    def check_pool(self) -> bool:
        """If a Pool process died, re-queue the batch it ran (via its slot) and start a fresh Pool."""
        now_pids = set(self.pool.pids())
        if now_pids == self.pids:
            return False
        gone = sorted(self.pids - now_pids)
        culprits = {job for pid in gone if (job := self.running_on.get(pid))}
        reason = f"a Pool process of node {self.node} died (pid {gone}) while the batch ran"
        log.warning("node %s: Pool process(es) %s died (batches %s); new Pool", self.node, gone, sorted(culprits))
        self._replace_pool(culprits=culprits or None, reason=reason)
        return True

    def _replace_pool(self, culprits: set[str] | None, reason: str) -> None:
        """Kill the Pool, answer `culprits` (None: every batch in flight) with `requeue`, resubmit the rest."""
        self.pool.close()  # its threads are joined: no callback can race what follows
        with self.lock:
            batches = list(self.batches.values())
        again = []
        for batch in batches:
            if culprits is None or batch.job_id in culprits:
                self._reply(batch, Reply("requeue", batch.job_id, reason=reason))
            else:
                batch.done = 0
                again.append(batch)
        self.pool = self.make_pool()
        self.pids = set(self.pool.pids())
        self.running_on.clear()
        for batch in again:
            self._submit(batch)

    # -- progress --------------------------------------------------------------------------------------
    def drain_progress(self) -> None:
        touched = {}
        while self.reader.poll():
            job_id, count, pid = self.pool.progress.get()
            if count == 0:
                self.running_on[pid] = job_id
                continue
            with self.lock:
                batch = self.batches.get(job_id)
                if batch is not None:
                    batch.done += count
                    touched[job_id] = batch
        for batch in touched.values():
            self._write_progress(batch)

    def _write_progress(self, batch: Batch, force: bool = False) -> None:
        with self.lock:
            if self.batches.get(batch.job_id) is not batch or batch.job is None or self.redis_down:
                return
            now = time.monotonic()
            if not force and now - batch.written < defaults.PROGRESS_INTERVAL:
                return
            batch.written = now
            batch.job.meta["progress"] = {"done": batch.done, "total": len(batch.items)}
            batch.job.meta["node"] = self.node
            # under the lock: once a batch is answered no stale progress may land after its final one
            with contextlib.suppress(redis.RedisError):
                batch.job.save_meta()

    def close(self) -> None:
        self.pool.close()
