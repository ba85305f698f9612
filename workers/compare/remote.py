"""Networked modes of `mplab compare`: RQ one job per task, RQ batched, stock RQ workers as reference.

An RQ mode runs against an `RqTarget` (a client, the run's queue, the slots serving it). Issue 10's
latency dimension adds targets whose client goes through a delaying proxy; nothing else changes.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import redis
from rq.job import Job
from rq.queue import Queue
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.utils import str_to_date
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from tasks import registry
from workers.compare import procs
from workers.compare.local import Run
from workers.compare.records import RqTiming, Spread
from workers.errors import JobFailed, JobTimeout, NodeUnavailable
from workers.heartbeat import node_key
from workers.jobs import enqueue_task_jobs

TRIVIAL = "tasks.cpu.trivial"
RESULT_TTL = 600  # seconds; the run deletes its jobs at the end anyway


@dataclass(frozen=True)
class RqTarget:
    """Where RQ modes send work: a client, the queue, the slots serving it (the mode's worker count)."""

    client: redis.Redis
    queue: str
    slots: int
    cores_used: int  # the physical limit of RQ speedups: slots, capped by this host's cores for local nodes
    on_jobs: Callable[[list[str]], None] = lambda ids: None  # the run records ids it put on a shared queue


class LocalNodes:
    """`mplab worker` processes this run starts on its private queue, and always stops.

    The Redis URL (with its password) reaches them in the environment (REDIS_URL), never in argv.
    """

    def __init__(self, url: str, queue: str, names: list[str], pool: int, start_method: str) -> None:
        self.url, self.queue, self.names, self.pool, self.start_method = url, queue, names, pool, start_method
        self.procs: list[Any] = []
        self.logs = tempfile.TemporaryDirectory(prefix="mplab-compare-")

    def __enter__(self) -> LocalNodes:
        try:
            for name in self.names:
                cmd = [sys.executable, "-m", "cli", "--queues", self.queue, "--start-method", self.start_method,
                       "worker", "--name", name, "--pool", str(self.pool), "--grace", "0.5"]  # fmt: skip
                self.procs.append(procs.spawn(cmd, {"REDIS_URL": self.url}, Path(self.logs.name) / f"{name}.log"))
            with redis.Redis.from_url(self.url) as client:
                self._wait_ready(client)
            procs.wait_quiet([p.pid for p in self.procs], timeout=5)
        except BaseException:
            self.__exit__(True, None, None)
            raise
        return self

    def _wait_ready(self, client: redis.Redis) -> None:
        deadline = time.monotonic() + 60
        while not all(client.hget(node_key(n), "slots_total") == str(self.pool).encode() for n in self.names):
            dead = [name for name, p in zip(self.names, self.procs, strict=True) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                err = (Path(self.logs.name) / f"{dead[0]}.log").read_text(errors="replace").strip() if dead else ""
                raise NodeUnavailable(f"a worker node failed to start: {err.splitlines()[-1] if err else 'timeout'}")
            time.sleep(0.05)

    def __exit__(self, exc: object, *rest: object) -> None:
        # idle nodes stop at once on SIGTERM; interrupted, anything left after a short grace is killed
        procs.stop(self.procs, grace=10.0 if exc is None else 0.7)
        self.logs.cleanup()

    def idle_memory(self) -> list[tuple[int, int]]:
        """(RSS sum, PSS sum) of each node's process tree, measured now (idle, after start-up)."""
        return [procs.tree_memory(p.pid) for p in self.procs]


def _fetch(client: redis.Redis, ids: list[str]) -> tuple[list[Any], dict[str, float]]:
    """Results (in order) and mean timings from the jobs' own timestamps, in pipelined round trips."""
    with client.pipeline() as pipe:
        for job_id in ids:
            pipe.xrevrange(Result.get_key(job_id), "+", "-", count=1)
            pipe.hmget(Job.key_for(job_id), "enqueued_at", "started_at", "ended_at", "status")
        rows = pipe.execute()
    values, waits, runs, starts, ends = [], [], [], [], []
    for job_id, stream, stamps in zip(ids, rows[::2], rows[1::2], strict=True):
        status = (stamps[3] or b"").decode()
        if status != "finished" or not stream:
            raise JobFailed(f"job {job_id} ended {status or 'missing'}: see `mplab result {job_id}`")
        result_id, payload = stream[0]
        result = Result.restore(job_id, result_id.decode(), payload, client, serializer=JSONSerializer)
        values.append(result.return_value)
        enq, start, end = (str_to_date(v).timestamp() for v in stamps[:3])
        waits.append(start - enq)
        runs.append(end - start)
        starts.append(start)
        ends.append(end)
    timing = {"queue_wait_ms": mean(waits) * 1000, "running_ms": mean(runs) * 1000, "drain_s": max(ends) - min(starts)}
    return values, timing


def _unfinished(client: redis.Redis, ids: set[str]) -> set[str]:
    """The ids among `ids` whose job has not ended yet (one pipelined round trip)."""
    order = list(ids)
    with client.pipeline(transaction=False) as pipe:
        for job_id in order:
            pipe.hget(Job.key_for(job_id), "status")
        states = pipe.execute()
    ended = {b"finished", b"failed", b"stopped", b"canceled"}
    return {job_id for job_id, state in zip(order, states, strict=True) if state not in ended}


def _done_count(client: redis.Redis, q: Queue) -> int:
    with client.pipeline() as pipe:
        pipe.zcard(q.finished_job_registry.key)
        pipe.zcard(q.failed_job_registry.key)
        finished, failed = pipe.execute()
    return int(finished) + int(failed)


def _wait(client: redis.Redis, q: Queue, baseline: int, ids: list[str], timeout: float) -> None:
    """Wait until every job in `ids` has ended.

    Cheap to poll: the queue's finished+failed counts (two ZCARDs every 5 ms) say when all may have
    ended; the jobs' own statuses confirm it (and every 100 ms anyway, in case registry clean-up
    moved the counts).
    """
    pending = set(ids)
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.1
    while pending:
        now = time.monotonic()
        if now > deadline:
            raise JobTimeout(
                f"timed out after {timeout:.0f}s waiting for {len(pending)} job(s) on {q.name!r}: are nodes running?"
            )
        if _done_count(client, q) - baseline >= len(ids) or now >= next_check:
            pending = _unfinished(client, pending)
            next_check = now + 0.1
        if pending:
            time.sleep(0.005)


def _timing(jobs: int, batch: int, enqueue_ms: float | None, fetch_ms: float | None, t: dict[str, float]) -> RqTiming:
    drain = jobs / t["drain_s"] if t["drain_s"] > 0 else float("inf")
    return RqTiming(jobs, batch, enqueue_ms, t["queue_wait_ms"], t["running_ms"], fetch_ms, Spread.of([drain]))


def rq_jobs(target: RqTarget, task: str, items: list[list[Any]], batch: int) -> Run:
    """Enqueue (one pipeline), wait for all, fetch results; wall covers all three."""
    client = target.client
    q = Queue(target.queue, connection=client, serializer=JSONSerializer)
    baseline = _done_count(client, q)
    t0 = time.perf_counter()
    jobs, _sizes = enqueue_task_jobs(client, target.queue, registry.resolve(task), items, batch, result_ttl=RESULT_TTL)
    t_enq = time.perf_counter()
    ids = [j.id for j in jobs]
    target.on_jobs(ids)
    _wait(client, q, baseline, ids, timeout=300)
    t_done = time.perf_counter()
    results, timing = _fetch(client, ids)
    wall = time.perf_counter() - t0
    values = [r["value"] for r in results] if batch <= 1 else [v for r in results for v in r["values"]]
    fetch_ms = (time.perf_counter() - t_done) * 1000
    rq = _timing(len(jobs), max(batch, 1), (t_enq - t0) * 1000, fetch_ms, timing)
    return Run(wall, values, target.slots, rq=rq)


def enqueue_rate(client: redis.Redis, queue: str, count: int) -> tuple[float, float]:
    """Jobs/s of `enqueue_many` in one pipeline, and of one `enqueue` at a time (jobs deleted afterwards)."""
    q = Queue(queue, connection=client, serializer=JSONSerializer)
    fn = registry.resolve(TRIVIAL)
    datas = [Queue.prepare_data(fn, args=(i,)) for i in range(count)]
    t0 = time.perf_counter()
    with client.pipeline() as pipe:
        q.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    t_many = time.perf_counter() - t0
    few = max(1, count // 10)
    t0 = time.perf_counter()
    for i in range(few):
        q.enqueue(fn, i)
    t_single = time.perf_counter() - t0
    q.delete(delete_jobs=True)
    return count / t_many, few / t_single


STOCK = {"simple": "rq.worker.SimpleWorker", "forking": None}
"""Stock RQ references: two `rq worker -w SimpleWorker` and two plain `rq worker` (one fork per job)."""


class StockWorkers:
    """Two stock `rq worker`s of each kind, warm (started once, like the nodes), each kind on a private queue.

    `spawn()` starts them (alongside the nodes, so both start-ups are over before anything is measured),
    `wait_registered()` waits until RQ lists them; the run stops them with its nodes (`procs.stop`).
    """

    def __init__(self, client: redis.Redis, url: str, queues: dict[str, str], per_kind: int = 2) -> None:
        self.client, self.url, self.queues, self.per_kind = client, url, queues, per_kind
        self.procs: list[Any] = []

    def spawn(self) -> None:
        rq_bin = str(Path(sys.executable).with_name("rq"))
        for kind, queue in self.queues.items():
            for i in range(self.per_kind):
                cmd = [rq_bin, "worker", "--serializer", "json", "--logging_level", "WARNING",
                       "-n", f"{queue}-{i + 1}", queue]  # fmt: skip
                if STOCK[kind]:
                    cmd[2:2] = ["-w", str(STOCK[kind])]
                self.procs.append(procs.spawn(cmd, {"RQ_REDIS_URL": self.url}))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def wait_registered(self) -> None:
        deadline = time.monotonic() + 60
        for queue in self.queues.values():
            while self.client.scard(WORKERS_BY_QUEUE_KEY % queue) < self.per_kind:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    raise NodeUnavailable("stock `rq worker` processes did not start (is rq installed here?)")
                time.sleep(0.05)

    def drain(self, kind: str, count: int) -> Run:
        """Enqueue `count` trivial jobs on that kind's queue; jobs/s from the jobs' own timestamps."""
        queue = self.queues[kind]
        q = Queue(queue, connection=self.client, serializer=JSONSerializer)
        fn = registry.resolve(TRIVIAL)
        baseline = _done_count(self.client, q)
        t0 = time.perf_counter()
        with self.client.pipeline() as pipe:
            datas = [Queue.prepare_data(fn, args=(i,), result_ttl=RESULT_TTL) for i in range(count)]
            jobs = q.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
        ids = [j.id for j in jobs]
        _wait(self.client, q, baseline, ids, timeout=300)
        wall = time.perf_counter() - t0
        results, timing = _fetch(self.client, ids)
        return Run(wall, [r["value"] for r in results], self.per_kind, rq=_timing(count, 1, None, None, timing))
