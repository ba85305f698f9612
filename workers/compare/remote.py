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
from rq.queue import Queue
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from tasks import catalog
from workers import client, procs
from workers.client import Outcome
from workers.compare.local import Run
from workers.compare.plan import TRIVIAL
from workers.compare.records import RqTiming, Spread
from workers.errors import JobFailed, NodeUnavailable
from workers.heartbeat import node_key

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


def _timing(jobs: int, batch: int, enqueue_ms: float | None, fetch_ms: float | None, outcome: Outcome) -> RqTiming:
    """Means per job from the jobs' own timestamps (enqueued, started, ended), and the drain rate."""
    got = [j.result for j in outcome.jobs if j.result is not None]
    stamps = [(r.enqueued_at, r.started_at, r.ended_at) for r in got]
    if not stamps or any(v is None for row in stamps for v in row):
        raise JobFailed("finished jobs without timestamps: the job hashes were changed while compare ran")
    enq, start, end = ([float(row[i] or 0.0) for row in stamps] for i in range(3))
    drain_s = max(end) - min(start)
    drain = jobs / drain_s if drain_s > 0 else float("inf")
    waits = [s - e for s, e in zip(start, enq, strict=True)]
    runs = [e - s for s, e in zip(start, end, strict=True)]
    return RqTiming(jobs, batch, enqueue_ms, mean(waits) * 1000, mean(runs) * 1000, fetch_ms, Spread.of([drain]))


def _enqueue_and_wait(conn: redis.Redis, queue: str, calls: list[client.Call], on_jobs: Callable[[list[str]], None]
                      ) -> tuple[Outcome, float, float, float]:  # fmt: skip
    """(outcome, enqueue s, wait s, result fetch s): one pipeline out, the one waiter back."""
    baseline = client.ended_count(conn, queue)
    t0 = time.perf_counter()
    jobs = client.enqueue_many(conn, queue, calls, client.JobOptions(result_ttl=RESULT_TTL))
    t_enq = time.perf_counter()
    on_jobs([j.id for j in jobs])
    outcome = client.wait(conn, jobs, [c.tasks for c in calls], timeout=300, poll=0.005,
                          ended_since=(queue, baseline)).check()  # fmt: skip
    waited = time.perf_counter() - t_enq
    return outcome, t_enq - t0, outcome.wall_s, max(0.0, waited - outcome.wall_s)


def rq_jobs(target: RqTarget, task: str, items: list[list[Any]], batch: int) -> Run:
    """Enqueue (one pipeline), wait for all, fetch results (the client does both); wall covers all three."""
    calls = client.task_calls(task, items, max(batch, 1))
    outcome, enq_s, wait_s, fetch_s = _enqueue_and_wait(target.client, target.queue, calls, target.on_jobs)
    rq = _timing(len(calls), max(batch, 1), enq_s * 1000, fetch_s * 1000, outcome)
    return Run(enq_s + wait_s + fetch_s, outcome.values(), target.slots, rq=rq)


def enqueue_rate(conn: redis.Redis, queue: str, count: int) -> tuple[float, float, float]:
    """Jobs/s of mplab's submit path (`client.enqueue_many`), RQ's own `enqueue_many` in one pipeline, and
    one `enqueue` at a time; the jobs are deleted afterwards."""
    q = client.queue(conn, queue)
    fn = catalog.TASKS.resolve(TRIVIAL)
    calls = client.task_calls(TRIVIAL, [[i] for i in range(count)], 1)
    t0 = time.perf_counter()
    client.enqueue_many(conn, queue, calls)
    t_ours = time.perf_counter() - t0
    datas = [Queue.prepare_data(fn, args=(i,)) for i in range(count)]
    t0 = time.perf_counter()
    with conn.pipeline() as pipe:
        q.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    t_many = time.perf_counter() - t0
    few = max(1, count // 10)
    t0 = time.perf_counter()
    for i in range(few):
        q.enqueue(fn, i)
    t_single = time.perf_counter() - t0
    q.delete(delete_jobs=True)
    return count / t_ours, count / t_many, few / t_single


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
        calls = client.task_calls(TRIVIAL, [[i] for i in range(count)], 1)
        outcome, enq_s, wait_s, fetch_s = _enqueue_and_wait(self.client, self.queues[kind], calls, lambda ids: None)
        rq = _timing(count, 1, None, None, outcome)
        return Run(enq_s + wait_s + fetch_s, outcome.values(), self.per_kind, rq=rq)
