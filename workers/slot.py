"""A node's job slot: one warm process running RQ's non-forking worker loop, with mplab's allow-list.

Each slot is a registered RQ worker (`rq info` shows it) that executes single-task jobs in-process (no
fork per job) and hands batch jobs to the node over its Pipe, which fans them out on the node's Pool.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import redis
from rq.exceptions import DeserializationError, StopRequested
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import as_text, now
from rq.worker.base import WorkerStatus

from tasks import batch, catalog
from tasks.registry import AllowList, UnknownTask, name_of
from workers import defaults, nodectx, proclife, recovery
from workers.errors import PayloadTooLarge
from workers.fanout import BatchRequest, Cancel, Reply
from workers.lean_worker import LeanWorker

T = TypeVar("T")

BATCH = name_of(batch.run_batch)
STOCK_FUNCTIONS = catalog.TASKS.extended(batch.run_batch)
"""What a slot runs when it is given no list: this package's tasks and batches of them."""
log = logging.getLogger("mplab.slot")


def refusal_reason(job: Job, functions: AllowList) -> str | None:
    """Why a node must not run `job`, or None if it may. Never imports the job's function."""
    try:
        name = job.func_name
    except DeserializationError:
        return "refused: the job's payload is not JSON (a pickled job?); mplab nodes run only JSON jobs"
    if not name or name not in functions:
        return f"refused: {name!r} is not a registered mplab task; nodes run only the functions they are given"
    return None


class NodeJob(Job):
    """An RQ Job whose execution a slot can route (in-process, or to the node's Pool)."""

    runner: Any = None

    def _execute(self) -> Any:
        if self.runner is None:
            return super()._execute()
        return self.runner(self)


class RunCut(Exception):
    """A batch run cut by the node's loss or a Pool process death: re-queued, not failed."""

    def __init__(self, cut: recovery.Cut, reason: str) -> None:
        super().__init__(reason)
        self.cut = cut
        self.reason = reason


class SlotWorker(LeanWorker):
    """RQ's non-forking worker (its lean variant) with the allow-list, batch hand-off, the node's signal
    policy, and Redis outages.

    RQ quits its loop on any Redis error outside the dequeue and backs off up to 60 s inside it. A slot
    instead waits for Redis wherever it must write (job start, result, failure), so a result computed
    during an outage is written once Redis is back, and it retries a dequeue at least every second.
    """

    job_class = NodeJob
    hub: Connection | None = None
    max_connection_wait_time = defaults.REDIS_BACKOFF_MAX
    redis_timeout = defaults.REDIS_TIMEOUT
    trouble = False  # a Redis error since the current job started
    job_t0 = 0.0

    def __init__(self, *args: Any, functions: AllowList = STOCK_FUNCTIONS, node: str = "", **kwargs: Any) -> None:
        """RQ's Worker arguments, plus the allow-list and the name of the node the slot belongs to."""
        super().__init__(*args, **kwargs)
        self.functions = functions
        self.node = node

    def _install_signal_handlers(self) -> None:
        # Ctrl-C reaches the whole process group: only the node decides; it stops slots with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.request_stop)

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm stop; unlike RQ, a later signal does not kill the running job (RQ would fail it).

        SIGTERM comes from the node (stop), or from the kernel when the node died (PR_SET_PDEATHSIG):
        either way the running job is finished (or, for a batch whose node is gone, re-queued).
        """
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with contextlib.suppress(redis.RedisError):
            super().request_stop(signum, frame)  # type: ignore[no-untyped-call]
            return
        if self._state != WorkerStatus.BUSY:  # Redis is down and we are idle: stop now
            raise StopRequested()
        self._stop_requested = True

    # -- Redis outages ----------------------------------------------------------------------------
    def _persist(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `fn` until Redis answers; give up (exit the slot) after the node's Redis timeout."""
        since: float | None = None
        while True:
            try:
                return fn(*args, **kwargs)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.trouble = True
                now_m = time.monotonic()
                if since is None:
                    since = now_m
                    log.warning("%s: Redis unreachable (%s); waiting for it", self.name, exc)
                elif now_m - since > self.redis_timeout:
                    log.warning("%s: Redis unreachable for %.0fs, giving up", self.name, now_m - since)
                    raise SystemExit(1) from None
                time.sleep(defaults.REDIS_RETRY_INTERVAL)

    def _settle(self, job: Job, final: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Write a job's end; on a retry after a Redis error, skip it if the first attempt went through."""
        first = True

        def attempt() -> None:
            nonlocal first
            if not first and as_text(self.connection.hget(job.key, "status") or b"") == final:
                return
            first = False
            fn(*args, **kwargs)

        self._persist(attempt)

    def prepare_execution(self, job: Job) -> Any:
        return self._persist(super().prepare_execution, job)

    def _start(self, job: Job) -> Any:
        self.trouble, self.job_t0 = False, time.monotonic()
        return self._persist(super()._start, job)

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        self._persist(super().prepare_job_execution, job, remove_from_intermediate_queue)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        self._persist(super().handle_execution_ended, job, queue, heartbeat_ttl)

    def handle_job_success(self, job: Job, queue: Queue, started_job_registry: Any, execution: Any) -> None:
        self._settle(job, JobStatus.FINISHED.value, super().handle_job_success, job, queue, started_job_registry,
                     execution)  # fmt: skip

    def handle_job_failure(
        self, job: Job, queue: Queue, started_job_registry: Any = None, exc_string: str = "", execution: Any = None
    ) -> None:
        self._settle(job, JobStatus.FAILED.value, super().handle_job_failure, job, queue, started_job_registry,
                     exc_string, execution)  # fmt: skip

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):  # best effort; dequeue retries
            super().heartbeat(timeout, pipeline)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        self._state = state
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            super().set_state(state, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]

    def teardown(self) -> None:
        with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
            super().teardown()  # type: ignore[no-untyped-call]

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's dequeue; a job whose hash RQ cannot read is failed with the reason, not a slot crash."""
        while True:
            try:
                return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
            except Exception as exc:
                job_id, queue = getattr(exc, "job_id", None), getattr(exc, "queue", None)
                if job_id is None or queue is None:
                    raise
                self._persist(recovery.quarantine, self.connection, job_id, queue.name, exc)

    # -- settling a run once -------------------------------------------------------------------------
    def _settled_elsewhere(self, job: Job, execution: Any) -> bool:
        """True if this run was re-queued by someone else meanwhile (then its end must not be written).

        Only a run that lasted a heartbeat or more, or met a Redis error, can have been taken by a
        sweeper (its slot key was fresh otherwise): short, clean runs skip the extra round trip.
        """
        if not self.trouble and time.monotonic() - self.job_t0 < defaults.HEARTBEAT_INTERVAL:
            return False
        if self._persist(recovery.claim, self.connection, job.id, execution.id, self.name):
            return False
        log.warning("%s: job %s was re-queued elsewhere while it ran here; dropping this run", self.name, job.id)
        return True

    def _finalize_success(self, job: Job, queue: Queue, execution: Any, return_value: Any) -> None:
        if not self._settled_elsewhere(job, execution):
            super()._finalize_success(job, queue, execution, return_value)

    def _finalize_failure(self, job: Job, queue: Queue, execution: Any, exc_info: Any) -> None:
        exc = exc_info[1]
        if isinstance(exc, RunCut):
            self._persist(recovery.interrupt, self.connection, job.id, execution.id, exc.reason, exc.cut, self.name)
            if exc.cut is recovery.Cut.DEATH:
                self._stop_requested = True  # the node is gone: take no other job
            return
        if not self._settled_elsewhere(job, execution):
            super()._finalize_failure(job, queue, execution, exc_info)

    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = payload_refusal(job) or refusal_reason(job, self.functions)
        if reason is not None:
            self.refuse(job, queue, reason)
            return
        job.runner = self.run_job  # type: ignore[attr-defined]
        super().execute_job(job, queue)

    def refuse(self, job: Job, queue: Queue, reason: str) -> None:
        """Fail `job` without executing it; the reason lands in the failed registry."""
        log.warning("%s: %s (job %s)", self.name, reason, job.id)
        execution = self.prepare_execution(job)
        job.started_at = job.ended_at = now()
        self.handle_job_failure(
            job,
            queue,
            started_job_registry=queue.started_job_registry,
            exc_string=reason,
            execution=execution,
        )
        self.set_state(WorkerStatus.IDLE)

    def run_job(self, job: Job) -> Any:
        name = job.func_name
        assert name is not None
        result = self.run_batch(job) if name == BATCH else self.functions.resolve(name)(*job.args, **job.kwargs)
        if isinstance(result, dict) and "task" in result and "started" in result:  # an Envelope or BatchResult
            result["node"] = self.node  # a slot knows its node; the task does not
            if job.enqueued_at is not None:
                result["enqueued"] = job.enqueued_at.timestamp()  # the envelope's third timing
        return result

    def run_batch(self, job: Job) -> batch.BatchResult:
        bound = inspect.signature(batch.run_batch).bind(*job.args, **job.kwargs)
        bound.apply_defaults()
        task, items, chunksize = (
            bound.arguments["task"],
            bound.arguments["items"],
            bound.arguments["chunksize"],
        )
        if task == BATCH or task not in self.functions:
            raise UnknownTask(task)
        if len(items) > defaults.MAX_BATCH_ITEMS:
            raise PayloadTooLarge(
                f"a batch of {len(items)} tasks exceeds the node's limit of {defaults.MAX_BATCH_ITEMS}"
            )
        if self.hub is None:  # not inside a node: behave like any RQ worker
            return batch.run_serial(task, self.functions.raw(task), items)
        try:
            self.hub.send(BatchRequest(job.id, task, [list(i) for i in items], int(chunksize)))
        except OSError:  # the node died before this slot heard of it: not the job's fault, no poison count
            self._stop_requested = True
            raise RunCut(recovery.Cut.STOP, f"node of {self.name} was gone before the batch could start") from None
        try:
            reply = self._await_batch(job.id)
        except BaseException:  # its timeout, or the node's loss: the node must stop its Pool work now
            with contextlib.suppress(OSError):
                self.hub.send(Cancel(job.id))
            raise
        if reply.kind == "requeue":
            raise RunCut(recovery.Cut.POOL, reply.reason)
        if reply.kind != "done" or reply.result is None:
            raise RuntimeError(f"batch failed in the node's Pool: {reply.reason}")
        size = len(json.dumps(reply.result))
        if size > defaults.MAX_RESULT_BYTES:
            raise PayloadTooLarge(f"the batch result is {size} bytes, over the limit of {defaults.MAX_RESULT_BYTES}")
        job.meta["progress"] = {"done": reply.result["count"], "total": len(items)}
        self._persist(job.save_meta)
        return reply.result

    def _await_batch(self, job_id: str) -> Reply:
        assert self.hub is not None
        while True:
            try:
                reply = self.hub.recv()
            except (EOFError, OSError):
                reason = f"node of {self.name} died while the batch ran (its Pool went with it)"
                raise RunCut(recovery.Cut.DEATH, reason) from None
            if isinstance(reply, Reply) and reply.job_id == job_id:  # else: a late reply for an earlier batch
                return reply


def payload_refusal(job: Job) -> str | None:
    """Why a job's payload is too large to run, before it is deserialized (a 100 MB payload stays bytes)."""
    size = len(job.data)
    if size > defaults.MAX_PAYLOAD_BYTES:
        return f"refused: the job's payload is {size} bytes, over the node's limit of {defaults.MAX_PAYLOAD_BYTES}"
    return None


@dataclass(frozen=True)
class SlotConfig:
    """What a slot process needs, all picklable (a URL, never a client)."""

    name: str
    node: str
    url: str
    queues: tuple[str, ...]
    burst: bool
    log_level: str
    functions: AllowList
    redis_timeout: float = defaults.REDIS_TIMEOUT


def _keep_alive(worker: SlotWorker, client: redis.Redis) -> None:
    """Renew this slot's liveness key: what sweepers check once its node's heartbeat is gone."""
    key = recovery.slot_key(worker.name)
    while True:
        try:
            client.set(key, str(os.getpid()), ex=defaults.HEARTBEAT_TTL)
        except redis.RedisError:
            worker.trouble = True
        time.sleep(defaults.HEARTBEAT_INTERVAL)


def _wait_for_redis(cfg: SlotConfig, parent_pid: int) -> None:
    """Block until Redis answers (a slot restarted during an outage must not die in its constructor).

    A client of its own: RQ sets the worker connection's socket timeout above its BLPOP timeout, which
    a connection pooled before (redis-py's default: 5 s) would keep.
    """
    since = time.monotonic()
    while True:
        try:
            with redis.Redis.from_url(cfg.url, socket_connect_timeout=3) as probe:
                probe.ping()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if os.getppid() != parent_pid or time.monotonic() - since > cfg.redis_timeout:
                raise SystemExit(1) from None
            time.sleep(defaults.REDIS_RETRY_INTERVAL)


def slot_main(cfg: SlotConfig, hub: Connection, lock: Any, inherited: list[Connection]) -> None:
    """Entry point of a slot process.

    `inherited` (fork only) are the node's ends of every slot's Pipe, copied into this process by fork:
    closed at once, so the node's death is an EOF on `hub` rather than a silence.
    """
    for conn in inherited:
        conn.close()
    parent_pid = os.getppid()
    proclife.child_signals()  # RQ installs its warm-shutdown SIGTERM handler in work()
    if not proclife.die_with_parent(signal.SIGTERM, parent_pid):  # SIGTERM: a warm stop, see request_stop
        return
    nodectx.init(cfg.node, cfg.url, lock)
    _wait_for_redis(cfg, parent_pid)
    connection = redis.Redis.from_url(cfg.url, socket_connect_timeout=3)
    worker = SlotWorker(
        list(cfg.queues), name=cfg.name, connection=connection, serializer=JSONSerializer, job_class=NodeJob,
        functions=cfg.functions, node=cfg.node,
    )  # fmt: skip
    worker.hub = hub
    worker.redis_timeout = cfg.redis_timeout
    threading.Thread(target=_keep_alive, args=(worker, connection), daemon=True, name="keeper").start()
    # a warm stop if the node disappears where PR_SET_PDEATHSIG is not available
    proclife.watch_parent(parent_pid, lambda: os.kill(os.getpid(), signal.SIGTERM), interval=0.2)
    try:
        worker.work(burst=cfg.burst, logging_level=cfg.log_level)
    finally:
        with contextlib.suppress(redis.RedisError):
            connection.delete(recovery.slot_key(cfg.name))
