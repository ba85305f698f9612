"""`mplab worker`: a node = P slot processes (RQ workers, no fork per job) + a warm Pool(P) for batches.

Process tree (P = pool size): node ─┬─ slot 1..P   (each a registered RQ worker; runs single jobs)
                                     └─ pool 1..P   (multiprocessing.Pool; runs chunks of batch jobs)
Slots talk to the node over one Pipe each (one-to-one); Pool processes report progress to the node over
one SimpleQueue (many-to-one). The node writes batch progress into `job.meta` and a heartbeat hash.

Stopping (SIGTERM/SIGINT): slots get SIGTERM, which is RQ's warm shutdown (finish the running job, take
no new one); the node keeps serving their batches. After the grace period, slots still busy are killed
and their jobs re-queued at the front with the reason in `job.meta`. Nothing is left running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import redis
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from workers import catalog, defaults, nodectx
from workers.errors import ConfigError
from workers.heartbeat import Heart, node_key, worker_key
from workers.pool import BatchPool
from workers.redis_server import connect
from workers.settings import Settings, machine_facts
from workers.slot import SlotConfig, slot_main

log = logging.getLogger("mplab.node")


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Slot:
    name: str
    process: BaseProcess
    conn: Connection


class Node:
    """One worker node; `run()` blocks until it has stopped and every child is reaped."""

    def __init__(self, settings: Settings, url: str, name: str, *, burst: bool = False, verbose: bool = False):
        self.settings = settings
        self.url = url
        self.name = name
        self.burst = burst
        self.log_level = "INFO" if verbose else "WARNING"
        self.ctx = settings.mp_context()
        self.client: redis.Redis = connect(url)
        self.slots: list[Slot] = []
        self.stopping = False
        self.deadline: float | None = None
        self.batches: dict[str, dict[str, Any]] = {}
        self.batches_lock = threading.Lock()
        self.requeued: list[str] = []
        self.pool_pids: set[int] = set()
        # self.pool and self.heart exist once run() has created them

    # -- start -------------------------------------------------------------------------------------
    def _claim_name(self) -> None:
        """Atomically claim the node's name (HSETNX), so two nodes can never share it."""
        key = node_key(self.name)
        if not self.client.hsetnx(key, "claimed_by", f"{socket.gethostname()}:{os.getpid()}"):
            raise ConfigError(f"a node named {self.name!r} is already running against this Redis")
        self.client.expire(key, 60)  # until the first heartbeat (start-up can take seconds with spawn)
        for i in range(self.settings.pool_size):  # leftovers of a killed node with this name
            key = worker_key(self._slot_name(i))
            if self.client.exists(key):
                with contextlib.suppress(Exception):
                    SimpleWorker.find_by_key(key, connection=self.client).register_death()  # type: ignore[union-attr]

    def _slot_name(self, i: int) -> str:
        return f"{self.name}.slot{i + 1}"

    def _start_slot(self, i: int) -> Slot:
        ours, theirs = self.ctx.Pipe(duplex=True)
        cfg = SlotConfig(self._slot_name(i), self.name, self.url, self.settings.queues, self.burst, self.log_level)
        proc = self.ctx.Process(target=slot_main, args=(cfg, theirs, self.lock), name=cfg.name)  # type: ignore[attr-defined]
        with nodectx.signals_blocked():
            proc.start()
        theirs.close()
        return Slot(cfg.name, proc, ours)

    def _start_pool(self) -> BatchPool:
        # Created before the slots: with fork, its processes must not inherit slot pipes or threads.
        with nodectx.signals_blocked():  # the Pool's threads (which re-fork workers) keep them blocked
            return BatchPool(self.ctx, self.settings.pool_size, self.name, self.url, self.lock)

    def run(self) -> int:
        """Start, serve until stopped, stop; every child is reaped before this returns."""
        self._claim_name()
        # Our handlers before any child exists: a signal during start-up stops the node in order too.
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.lock = self.ctx.Lock()
            nodectx.init(self.name, self.url, self.lock)
            catalog.load()
            self.pool = self._start_pool()
            self.pool_pids = set(self.pool.pids())
            for i in range(self.settings.pool_size):
                if not self.stopping:
                    self.slots.append(self._start_slot(i))
            facts = machine_facts(self.settings.start_method)
            static = {"pool_size": self.settings.pool_size, "start_method": facts["start_method"],
                      "queues": ",".join(self.settings.queues), "cores": facts["cores"]}  # fmt: skip
            self.heart = Heart(self.client, self.name, static)
            log.warning(
                "node %s (pid %d): %d slots, Pool(%d) pids %s, start method %s, queues %s",
                self.name, os.getpid(), len(self.slots), self.settings.pool_size, self.pool.pids(),
                self.settings.start_method, ",".join(self.settings.queues),
            )  # fmt: skip
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.client.close()
        log.warning("node %s stopped (%d job(s) re-queued)", self.name, len(self.requeued))
        return 0

    # -- main loop ---------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.warning("node %s: %s, stopping (grace %.0fs)", self.name, signal.Signals(signum).name,
                        self.settings.grace_period)  # fmt: skip
            self.stopping = True
            self.deadline = time.monotonic() + self.settings.grace_period
            for slot in self.slots:
                if slot.process.is_alive() and slot.process.pid:
                    os.kill(slot.process.pid, signal.SIGTERM)
        else:
            log.warning("node %s: second signal, stopping now", self.name)
            self.deadline = time.monotonic()

    def _loop(self) -> None:
        next_beat = 0.0
        progress_reader = self.pool.progress._reader  # type: ignore[attr-defined]
        while True:
            now = time.monotonic()
            if now >= next_beat:
                try:
                    self.heart.beat([s.name for s in self.slots], "stopping" if self.stopping else "running")
                except redis.RedisError as exc:  # a Redis blip must not take the node down; RQ retries too
                    log.warning("node %s: heartbeat failed: %s", self.name, exc)
                next_beat = now + defaults.HEARTBEAT_INTERVAL
            alive = [s for s in self.slots if s.process.is_alive()]
            if not alive:
                return
            if self.deadline is not None and now >= self.deadline:
                return
            waitables: list[Any] = [s.conn for s in alive] + [progress_reader]
            waitables += [s.process.sentinel for s in self.slots]
            for ready in wait(waitables, timeout=0.2):
                if ready is progress_reader:
                    self._drain_progress()
                else:
                    self._from_slot(ready)
            self._reap_slots()
            if self._check_pool():
                progress_reader = self.pool.progress._reader  # type: ignore[attr-defined]

    def _from_slot(self, ready: Any) -> None:
        slot = next((s for s in self.slots if s.conn is ready), None)
        if slot is None:
            return
        try:
            kind, job_id, task, items, chunksize = slot.conn.recv()
        except (EOFError, OSError):
            return
        if kind != "batch":
            return
        conn = slot.conn

        def reply(kind: str, payload: Any) -> None:  # tagged: a slot drops replies for an older job
            self._finish_batch(job_id)
            with contextlib.suppress(OSError):
                conn.send((kind, job_id, payload))

        try:
            job = Job.fetch(job_id, connection=self.client, serializer=JSONSerializer)
            with self.batches_lock:
                self.batches[job_id] = {"job": job, "done": 0, "total": len(items), "written": 0.0, "reply": reply}
            self._write_progress(job_id, force=True)
            self.pool.submit(
                job_id, task, items, chunksize,
                lambda result: reply("done", result),
                lambda exc: reply("error", f"{type(exc).__name__}: {exc}"),
            )  # fmt: skip
        except Exception as exc:  # a vanished job, a Redis error: fail this batch, not the node
            reply("error", f"{type(exc).__name__}: {exc}")

    def _check_pool(self) -> bool:
        """If a Pool process died (OOM, segfault), fail the batches in flight and start a fresh Pool.

        multiprocessing.Pool replaces a dead process but never completes the chunk it was running, and
        a process killed while waiting for work leaves the task queue locked: the Pool cannot be trusted.
        """
        if self.stopping or set(self.pool.pids()) == self.pool_pids:
            return False
        gone = self.pool_pids - set(self.pool.pids())
        log.warning("node %s: Pool process(es) %s died; failing batches in flight, new Pool", self.name, gone)
        with self.batches_lock:
            replies = [state["reply"] for state in self.batches.values()]
        for reply in replies:
            reply("error", f"a Pool process of node {self.name} died (pid {sorted(gone)}) while the batch ran")
        self.pool.close()
        self.pool = self._start_pool()
        self.pool_pids = set(self.pool.pids())
        return True

    def _finish_batch(self, job_id: str) -> None:
        with self.batches_lock:
            self.batches.pop(job_id, None)

    def _drain_progress(self) -> None:
        touched = set()
        while self.pool.progress._reader.poll():  # type: ignore[attr-defined]
            job_id, count = self.pool.progress.get()
            with self.batches_lock:
                state = self.batches.get(job_id)
                if state is not None:
                    state["done"] += count
                    touched.add(job_id)
        for job_id in touched:
            self._write_progress(job_id)

    def _write_progress(self, job_id: str, force: bool = False) -> None:
        with self.batches_lock:
            state = self.batches.get(job_id)
            if state is None:
                return
            now = time.monotonic()
            if not force and now - state["written"] < defaults.PROGRESS_INTERVAL:
                return
            state["written"] = now
            job: Job = state["job"]
            job.meta["progress"] = {"done": state["done"], "total": state["total"]}
            job.meta["node"] = self.name
            # under the lock: once a batch is finished no stale progress may land after its final one
            with contextlib.suppress(redis.RedisError):
                job.save_meta()

    def _reap_slots(self) -> None:
        """A slot that died while the node runs: re-queue its job and start a replacement."""
        for i, slot in enumerate(self.slots):
            if slot.process.is_alive() or slot.process.exitcode is None:
                continue
            if self.stopping or (self.burst and slot.process.exitcode == 0):
                continue
            slot.process.join()
            log.warning("node %s: slot %s died (exit %s); restarting it", self.name, slot.name,
                        slot.process.exitcode)  # fmt: skip
            reason = f"slot {slot.name} died (exit code {slot.process.exitcode})"
            self._requeue(self._current_jobs(slot), slot.name, reason)
            slot.conn.close()
            self.slots[i] = self._start_slot(i)

    # -- stop --------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.stopping = True
        for slot in self.slots:
            if slot.process.is_alive():
                grace = self.settings.grace_period
                reason = f"node {self.name} stopped: job still running after the {grace:.0f}s grace period"
                job_ids = self._current_jobs(slot)
                slot.process.kill()
                slot.process.join()
                self._requeue(job_ids, slot.name, reason)
            else:
                slot.process.join()
            slot.conn.close()
        if hasattr(self, "pool"):
            self.pool.close()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(node_key(self.name))
            self.client.srem(defaults.NODES_SET, self.name)

    def _current_jobs(self, slot: Slot) -> list[str]:
        """Ids of the jobs a slot is executing, from its RQ executions in Redis."""
        with contextlib.suppress(redis.RedisError):
            worker = SimpleWorker.find_by_key(worker_key(slot.name), connection=self.client)
            if worker is not None:
                return [e.job_id for e in worker.get_current_executions(refresh=True)]
        return []

    def _requeue(self, job_ids: list[str], slot_name: str, reason: str) -> None:
        """Put interrupted jobs back at the front of their queue, saying why; clean the dead slot's record."""
        with contextlib.suppress(Exception):
            worker = SimpleWorker.find_by_key(worker_key(slot_name), connection=self.client)
            if worker is not None:
                worker.register_death()
        for job_id in job_ids:
            self._requeue_one(job_id, reason)

    def _requeue_one(self, job_id: str, reason: str) -> None:
        try:
            job = Job.fetch(job_id, connection=self.client, serializer=JSONSerializer)
        except Exception:
            log.warning("node %s: interrupted job %s vanished", self.name, job_id)
            return
        if job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED):
            return
        StartedJobRegistry(job.origin, connection=self.client).remove_executions(job)
        job.meta.setdefault("interruptions", []).append(reason)
        job.save_meta()
        failed = FailedJobRegistry(job.origin, connection=self.client, serializer=JSONSerializer)
        failed.add(job, exc_string=reason)
        failed.requeue(job, at_front=True)
        self.requeued.append(job_id)
        log.warning("node %s: re-queued job %s on %s (%s)", self.name, job_id, job.origin, reason)
