"""What one job costs on the wire: Redis commands and sequential round trips per job, mplab node vs stock RQ.

Method (the same for both kinds, in one run): start the workers (K stock SimpleWorkers, or one mplab node
with K slots) with their Redis traffic through a `LatencyProxy`, wait until they are registered and idle,
enqueue N trivial jobs directly, and wait until all have ended. Round trips come from the proxy (only the
workers go through it); commands from the server's own `INFO commandstats`, less what this process sent
(the enqueue and its polling). Start-up and shutdown are outside the window, so what is left is per job;
jobs/s is N over the span from the first job's start to the last one's end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Literal

import redis
from rq.utils import str_to_date

from tasks import cpu
from tasks.registry import name_of
from workers import client as jobclient
from workers import procs
from workers.errors import ConfigError
from workers.netproxy import LatencyProxy

WorkerKind = Literal["mplab", "stock"]
WORKER_KINDS: tuple[WorkerKind, ...] = ("mplab", "stock")
DRAIN_TIMEOUT = 300.0
"""Seconds a burst worker may take to drain the measured jobs before the measurement fails."""


@dataclass(frozen=True)
class Drain:
    """Warm workers draining `jobs` queued jobs."""

    jobs: int
    commands: int
    """Commands the workers sent (ours, the enqueue and the polling, subtracted)."""
    round_trips: int
    """Sequential round trips the workers made, counted by the proxy (only they go through it)."""
    drain_s: float
    """From the first job's start to the last job's end, by the jobs' own timestamps."""


@dataclass(frozen=True)
class JobCost:
    """Per-job cost of one worker kind with `workers` parallel workers (slots for mplab)."""

    worker: WorkerKind
    workers: int
    batch: int
    rtt_ms: float
    jobs: int
    commands_per_job: float
    round_trips_per_job: float
    jobs_per_s: float
    """Jobs drained per second, from the first job's start to the last job's end (start-up excluded)."""


def _commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for v in stats.values())


def _worker_cmds(kind: WorkerKind, queue: str, workers: int) -> list[list[str]]:
    if kind == "mplab":  # one node, `workers` slots
        return [[sys.executable, "-m", "cli", "--queues", queue, "worker", "--pool", str(workers), "--name", queue]]
    return [[sys.executable, "-m", "rq.cli", "worker", "--worker-class", "rq.worker.SimpleWorker",
             "--serializer", "rq.serializers.JSONSerializer", "--name", f"{queue}-{i}", queue]
            for i in range(workers)]  # fmt: skip


class WarmWorkers:
    """`workers` registered RQ workers of `kind` on `queue`, talking to Redis through the proxy; always stopped."""

    def __init__(self, kind: WorkerKind, queue: str, workers: int, url: str) -> None:
        self.kind, self.queue, self.workers = kind, queue, workers
        self.env = {"REDIS_URL": url, "RQ_REDIS_URL": url}  # never a password in argv
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> WarmWorkers:
        for cmd in _worker_cmds(self.kind, self.queue, self.workers):
            self.procs.append(procs.spawn(cmd, self.env))
        return self

    def wait_ready(self, client: redis.Redis, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while client.scard(f"rq:workers:{self.queue}") < self.workers:
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise ConfigError(f"{self.kind} workers did not start on queue {self.queue}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        procs.stop(self.procs, grace=30.0)


def drain(
    client: redis.Redis, proxy: LatencyProxy, url: str, kind: WorkerKind, jobs: int, batch: int, workers: int = 1
) -> Drain:
    """Start warm workers on a fresh queue, enqueue `jobs` trivial jobs (`batch` tasks each), wait until done."""
    queue = f"mplab-netcost-{os.getpid()}-{time.monotonic_ns()}"
    ids: list[str] = []
    enqueue_cmds = _enqueue_commands(client, jobs, batch)
    try:
        with WarmWorkers(kind, queue, workers, proxy.url(url)) as warm:
            warm.wait_ready(client)
            time.sleep(0.2)  # let start-up traffic settle
            rt0, cmd0 = proxy.stats().round_trips, _commands(client)
            ids = _enqueue(client, queue, jobs, batch)
            polls = 0
            deadline = time.monotonic() + DRAIN_TIMEOUT
            while client.zcard(f"rq:finished:{queue}") + client.zcard(f"rq:failed:{queue}") < jobs:
                polls += 2
                if time.monotonic() > deadline:
                    raise ConfigError(f"{kind} workers did not drain {jobs} jobs in {DRAIN_TIMEOUT:.0f} s")
                time.sleep(0.01)
            polls += 2
            rt1, cmd1 = proxy.stats().round_trips, _commands(client)
        failed = client.zcard(f"rq:failed:{queue}")
        if failed:
            raise ConfigError(f"{failed} of the {kind} workers' jobs failed")
        # Commands between the snapshots, less the enqueue, our polls and our INFO call.
        worker_cmds = (cmd1 - cmd0) - enqueue_cmds - polls - 1
        return Drain(jobs, worker_cmds, rt1 - rt0, _drain_seconds(client, ids))
    finally:
        _forget(client, queue, ids)


def _enqueue(client: redis.Redis, queue: str, jobs: int, batch: int) -> list[str]:
    calls = jobclient.task_calls(name_of(cpu.trivial), [[i] for i in range(jobs * batch)], batch)
    return [job.id for job in jobclient.enqueue_many(client, queue, calls)]


def _enqueue_commands(client: redis.Redis, jobs: int, batch: int) -> int:
    """How many commands enqueueing these jobs costs (measured on a queue no worker listens to)."""
    queue = f"mplab-netcost-dry-{os.getpid()}-{time.monotonic_ns()}"
    before = _commands(client)
    ids = _enqueue(client, queue, jobs, batch)
    spent = _commands(client) - before - 1
    _forget(client, queue, ids)
    return spent


def _drain_seconds(client: redis.Redis, ids: list[str]) -> float:
    if not ids:
        return 0.0
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(f"rq:job:{job_id}", "started_at", "ended_at")
        rows = pipe.execute()
    starts = [str_to_date(s).timestamp() for s, _ in rows if s]
    ends = [str_to_date(e).timestamp() for _, e in rows if e]
    return max(ends) - min(starts) if starts and ends else 0.0


def _forget(client: redis.Redis, queue: str, ids: list[str]) -> None:
    """Delete the measurement's queue, registries, jobs and results (nothing else)."""
    keys = [k for k in client.scan_iter(f"rq:*{queue}*")]
    keys += [key for job_id in ids for key in (f"rq:job:{job_id}", f"rq:results:{job_id}")]
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])
    client.srem("rq:queues", f"rq:queue:{queue}")


def job_cost(
    url: str, kind: WorkerKind, *, jobs: int = 300, batch: int = 1, rtt_ms: float = 0.0, workers: int = 1
) -> JobCost:
    """Commands, round trips and drain rate per job for `kind`, through a proxy adding `rtt_ms`.

    Use a Redis nothing else talks to while this runs: every command the server counts is charged.
    """
    if not 1 <= jobs <= 100_000 or not 1 <= batch <= 1000 or not 1 <= workers <= 16:
        raise ConfigError(f"need jobs in 1..100000, batch in 1..1000, workers in 1..16; got {jobs}, {batch}, {workers}")
    with redis.Redis.from_url(url) as client, LatencyProxy.for_url(url, rtt_ms=rtt_ms) as proxy:
        run = drain(client, proxy, url, kind, jobs, batch, workers)
    return JobCost(
        worker=kind,
        workers=workers,
        batch=batch,
        rtt_ms=rtt_ms,
        jobs=jobs,
        commands_per_job=run.commands / jobs,
        round_trips_per_job=run.round_trips / jobs,
        jobs_per_s=jobs / run.drain_s if run.drain_s > 0 else float("nan"),
    )
