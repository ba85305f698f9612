"""A node's job slot: one warm process running RQ's non-forking worker loop, with mplab's allow-list.

Each slot is a registered RQ worker (`rq info` shows it) that executes single-task jobs in-process (no
fork per job) and hands batch jobs to the node over its Pipe, which fans them out on the node's Pool.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import redis
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.utils import now
from rq.worker.base import WorkerStatus

from tasks import batch, registry
from workers import catalog, nodectx
from workers.lean_worker import LeanWorker

BATCH = registry.name_of(batch.run_batch)
log = logging.getLogger("mplab.slot")


def refusal_reason(job: Job) -> str | None:
    """Why a node must not run `job`, or None if it may. Never imports the job's function."""
    try:
        name = job.func_name
    except DeserializationError:
        return "refused: the job's payload is not JSON (a pickled job?); mplab nodes run only JSON jobs"
    if not name or not registry.is_registered(name):
        return f"refused: {name!r} is not a registered mplab task; nodes run only functions in tasks.registry"
    return None


class NodeJob(Job):
    """An RQ Job whose execution a slot can route (in-process, or to the node's Pool)."""

    runner: Any = None

    def _execute(self) -> Any:
        if self.runner is None:
            return super()._execute()
        return self.runner(self)


class SlotWorker(LeanWorker):
    """RQ's non-forking worker (its lean variant) with the allow-list, batch hand-off and the node's signal policy."""

    job_class = NodeJob
    hub: Connection | None = None

    def _install_signal_handlers(self) -> None:
        # Ctrl-C reaches the whole process group: only the node decides; it stops slots with SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.request_stop)

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm stop; unlike RQ, a later signal does not kill the running job (RQ would fail it).

        After the grace period the node kills this slot and re-queues its job itself.
        """
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)

    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = refusal_reason(job)
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
        result = self.run_batch(job) if name == BATCH else registry.resolve(name)(*job.args, **job.kwargs)
        if isinstance(result, dict) and "started" in result and job.enqueued_at is not None:
            result["enqueued"] = job.enqueued_at.timestamp()  # the envelope's third timing
        return result

    def run_batch(self, job: Job) -> dict[str, Any]:
        bound = inspect.signature(batch.run_batch).bind(*job.args, **job.kwargs)
        bound.apply_defaults()
        task, items, chunksize = (
            bound.arguments["task"],
            bound.arguments["items"],
            bound.arguments["chunksize"],
        )
        if task == BATCH or not registry.is_registered(task):
            raise registry.UnknownTask(task)
        if self.hub is None:  # not inside a node: behave like any RQ worker
            return batch.run_batch(task, items, chunksize)
        self.hub.send(("batch", job.id, task, [list(i) for i in items], int(chunksize)))
        while True:
            try:
                kind, job_id, payload = self.hub.recv()
            except EOFError:
                raise RuntimeError("the node went away while this batch was running") from None
            if job_id == job.id:
                break  # anything else is the late reply for an earlier batch that timed out here
        if kind != "done":
            raise RuntimeError(f"batch failed in the node's Pool: {payload}")
        job.meta["progress"] = {"done": payload["count"], "total": len(items)}
        job.save_meta()
        return dict(payload)


@dataclass(frozen=True)
class SlotConfig:
    """What a slot process needs, all picklable (a URL, never a client)."""

    name: str
    node: str
    url: str
    queues: tuple[str, ...]
    burst: bool
    log_level: str


def _watch_parent(parent_pid: int) -> None:
    """Warm-stop this slot if its node disappears, then exit for good (no orphans)."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
    os._exit(1)


def slot_main(cfg: SlotConfig, hub: Connection, lock: Any) -> None:
    """Entry point of a slot process."""
    nodectx.child_signals()  # RQ installs its warm-shutdown SIGTERM handler in work()
    nodectx.init(cfg.node, cfg.url, lock)
    catalog.load()
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True, name="parent-watch").start()
    connection = redis.Redis.from_url(cfg.url)
    worker = SlotWorker(
        list(cfg.queues), name=cfg.name, connection=connection, serializer=JSONSerializer, job_class=NodeJob
    )
    worker.hub = hub
    worker.work(burst=cfg.burst, logging_level=cfg.log_level)
