"""What one job costs on the wire: Redis commands and sequential round trips per job, mplab node vs stock RQ.

Method (the same for both workers, in one run): enqueue N trivial jobs, then start the worker in burst
mode with its Redis traffic through a `LatencyProxy`, and let it drain the queue and exit. Commands come
from the server's own `INFO commandstats` (nothing else talks to the server meanwhile), round trips from
the proxy. A burst run over an empty queue measures the fixed cost of starting and stopping, which is
subtracted, so what remains is per job. Wall time of the drain gives jobs/s at that RTT.
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
from workers.errors import ConfigError
from workers.jobs import enqueue_task_jobs
from workers.netproxy import LatencyProxy

WorkerKind = Literal["mplab", "stock"]
WORKER_KINDS: tuple[WorkerKind, ...] = ("mplab", "stock")
DRAIN_TIMEOUT = 300.0
"""Seconds a burst worker may take to drain the measured jobs before the measurement fails."""


@dataclass(frozen=True)
class Drain:
    """One burst run of a worker over `jobs` queued jobs."""

    jobs: int
    commands: int
    round_trips: int
    wall_s: float
    drain_s: float
    """From the first job's start to the last job's end, by the jobs' own timestamps."""


@dataclass(frozen=True)
class JobCost:
    """Per-job cost of one worker kind, the fixed start/stop cost removed."""

    worker: WorkerKind
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


def _worker_cmd(kind: WorkerKind, queue: str, name: str) -> list[str]:
    if kind == "mplab":
        return [sys.executable, "-m", "cli", "--queues", queue, "worker", "--burst", "--pool", "1", "--name", name]
    return [sys.executable, "-m", "rq.cli", "worker", "--burst", "--worker-class", "rq.worker.SimpleWorker",
            "--serializer", "rq.serializers.JSONSerializer", "--name", name, queue]  # fmt: skip


def drain(client: redis.Redis, proxy: LatencyProxy, url: str, kind: WorkerKind, jobs: int, batch: int) -> Drain:
    """Enqueue `jobs` trivial jobs (of `batch` tasks each) on a fresh queue and time one burst worker over them."""
    queue = f"mplab-netcost-{os.getpid()}-{time.monotonic_ns()}"
    ids = [j.id for j in enqueue_task_jobs(client, queue, cpu.trivial, [[i] for i in range(jobs * batch)], batch)[0]]
    # The password travels in the environment, never on a command line.
    env = {**os.environ, "REDIS_URL": proxy.url(url), "RQ_REDIS_URL": proxy.url(url)}
    before_cmds, before_rt = _commands(client), proxy.stats().round_trips
    started = time.monotonic()
    proc = subprocess.Popen(
        _worker_cmd(kind, queue, queue), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        _, err = proc.communicate(timeout=DRAIN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wall = time.monotonic() - started
    after_cmds, after_rt = _commands(client) - 1, proxy.stats().round_trips  # minus our own INFO
    drain_s = _drain_seconds(client, ids)
    left = client.llen(f"rq:queue:{queue}")
    failed = client.zcard(f"rq:failed:{queue}")
    _forget(client, queue, ids)
    if proc.returncode != 0 or left or failed:
        last = (err or "").strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        raise ConfigError(f"{kind} worker did not drain {jobs} jobs ({left} left, {failed} failed): {last[0]}")
    return Drain(jobs, after_cmds - before_cmds, after_rt - before_rt, wall, drain_s)


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


def job_cost(url: str, kind: WorkerKind, *, jobs: int = 300, batch: int = 1, rtt_ms: float = 0.0) -> JobCost:
    """Commands, round trips and drain rate per job for `kind`, through a proxy adding `rtt_ms`.

    Use a Redis nothing else talks to while this runs: every command the server counts is charged.
    """
    if not 1 <= jobs <= 100_000 or not 1 <= batch <= 1000:
        raise ConfigError(f"jobs must be in 1..100000 and batch in 1..1000, got {jobs} and {batch}")
    with redis.Redis.from_url(url) as client, LatencyProxy.for_url(url, rtt_ms=rtt_ms) as proxy:
        empty = drain(client, proxy, url, kind, 0, batch)
        full = drain(client, proxy, url, kind, jobs, batch)
    return JobCost(
        worker=kind,
        batch=batch,
        rtt_ms=rtt_ms,
        jobs=jobs,
        commands_per_job=(full.commands - empty.commands) / jobs,
        round_trips_per_job=(full.round_trips - empty.round_trips) / jobs,
        jobs_per_s=jobs / full.drain_s if full.drain_s > 0 else float("nan"),
    )
