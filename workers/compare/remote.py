"""Networked modes of `mplab compare`: RQ one job per task, RQ batched, stock RQ workers as reference."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from statistics import mean
from typing import Any

import redis
from rq.job import Job
from rq.queue import Queue
from rq.results import Result
from rq.serializers import JSONSerializer

from tasks import registry
from workers.compare.local import Run
from workers.errors import LabError
from workers.heartbeat import node_key, read_nodes
from workers.jobs import enqueue_task_jobs
from workers.redis_server import die_with_parent


class LocalNodes:
    """`mplab worker` processes this command starts on its own queue and always stops."""

    def __init__(self, url: str, queue: str, count: int, pool: int, start_method: str) -> None:
        self.url, self.queue, self.count, self.pool, self.start_method = url, queue, count, pool, start_method
        self.run_id = uuid.uuid4().hex[:6]
        self.names = [f"compare-{self.run_id}-{i + 1}" for i in range(count)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs = tempfile.TemporaryDirectory(prefix="mplab-compare-")

    def __enter__(self) -> LocalNodes:
        for name in self.names:
            cmd = [sys.executable, "-m", "cli", "--redis-url", self.url, "--queues", self.queue,
                   "--start-method", self.start_method, "worker", "--name", name, "--pool", str(self.pool)]  # fmt: skip
            with open(Path(self.logs.name) / f"{name}.log", "wb") as log:  # the node writes, we read on failure
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
            self.procs.append(proc)
        with redis.Redis.from_url(self.url) as client:
            self._wait_ready(client)
        return self

    def _wait_ready(self, client: redis.Redis) -> None:
        deadline = time.monotonic() + 60
        while not all(client.hget(node_key(n), "slots_total") == str(self.pool).encode() for n in self.names):
            dead = [name for name, p in zip(self.names, self.procs, strict=True) if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                err = (Path(self.logs.name) / f"{dead[0]}.log").read_text(errors="replace").strip() if dead else ""
                self.__exit__(None, None, None)
                raise LabError(f"a worker node failed to start: {err.splitlines()[-1] if err else 'timeout'}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.logs.cleanup()

    def idle_memory(self) -> list[tuple[int, int]]:
        """(RSS sum, PSS sum) of each node's process tree from its latest heartbeat."""
        with redis.Redis.from_url(self.url) as client:
            rows = [client.hmget(node_key(n), "rss_bytes", "pss_bytes") for n in self.names]
        return [(int(r or 0), int(p or 0)) for r, p in rows]


def existing_slots(client: redis.Redis) -> int:
    """Total slots of the live nodes already running (for `--nodes 0`)."""
    return sum(n["slots_total"] for n in read_nodes(client) if not n["stale"])


def _done_count(client: redis.Redis, q: Queue) -> int:
    with client.pipeline() as pipe:
        pipe.zcard(q.finished_job_registry.key)
        pipe.zcard(q.failed_job_registry.key)
        finished, failed = pipe.execute()
    return int(finished) + int(failed)


def _fetch(client: redis.Redis, ids: list[str]) -> tuple[list[Any], dict[str, float]]:
    """Results (in order) and mean timings from the jobs' own timestamps, in pipelined round trips."""
    with client.pipeline() as pipe:
        for job_id in ids:
            pipe.xrevrange(Result.get_key(job_id), "+", "-", count=1)
            pipe.hmget(Job.key_for(job_id), "enqueued_at", "started_at", "ended_at", "status")
        rows = pipe.execute()
    values, waits, runs, starts, ends = [], [], [], [], []
    from rq.utils import str_to_date

    for job_id, stream, stamps in zip(ids, rows[::2], rows[1::2], strict=True):
        status = (stamps[3] or b"").decode()
        if status != "finished" or not stream:
            raise LabError(f"job {job_id} ended {status or 'missing'}: see `mplab result {job_id}`")
        result_id, payload = stream[0]
        result = Result.restore(job_id, result_id.decode(), payload, client, serializer=JSONSerializer)
        values.append(result.return_value)
        enq, start, end = (str_to_date(v).timestamp() for v in stamps[:3])
        waits.append(start - enq)
        runs.append(end - start)
        starts.append(start)
        ends.append(end)
    timing = {
        "queue_wait_ms": mean(waits) * 1000,
        "running_ms": mean(runs) * 1000,
        "drain_s": max(ends) - min(starts),
    }
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


def _wait(client: redis.Redis, q: Queue, baseline: int, ids: list[str], timeout: float) -> None:
    """Wait until every job in `ids` has ended.

    Cheap to poll: the queue's finished+failed counts (two ZCARDs every 5 ms) say when all may have
    ended; the jobs' own statuses confirm it (and every 100 ms anyway, in case other clients' jobs or
    registry clean-up moved the counts).
    """
    pending = set(ids)
    deadline = time.monotonic() + timeout
    next_check = time.monotonic() + 0.1
    while pending:
        now = time.monotonic()
        if now > deadline:
            raise LabError(
                f"timed out after {timeout:.0f}s waiting for {len(pending)} job(s) on {q.name!r}: are nodes running?"
            )
        if _done_count(client, q) - baseline >= len(ids) or now >= next_check:
            pending = _unfinished(client, pending)
            next_check = now + 0.1
        if pending:
            time.sleep(0.005)


def rq_jobs(client: redis.Redis, queue: str, task: str, items: list[list[Any]], batch: int, slots: int) -> Run:
    """Enqueue (one pipeline), wait for all, fetch results; wall covers all three."""
    q = Queue(queue, connection=client, serializer=JSONSerializer)
    baseline = _done_count(client, q)
    t0 = time.perf_counter()
    jobs, _sizes = enqueue_task_jobs(client, queue, registry.resolve(task), items, batch, result_ttl=600)
    t_enq = time.perf_counter()
    ids = [j.id for j in jobs]
    _wait(client, q, baseline, ids, timeout=300)
    t_done = time.perf_counter()
    results, timing = _fetch(client, ids)
    wall = time.perf_counter() - t0
    if batch <= 1:
        values = [r["value"] for r in results]
    else:
        values = [v for r in results for v in r["values"]]
    extra = {
        "jobs": len(jobs),
        "batch": max(batch, 1),
        "enqueue_ms": (t_enq - t0) * 1000,
        "result_fetch_ms": (time.perf_counter() - t_done) * 1000,
        **timing,
    }
    return Run(wall, values, slots, extra)


def enqueue_rate(client: redis.Redis, queue: str, count: int) -> dict[str, float]:
    """Jobs/s of `enqueue_many` in one pipeline vs one `enqueue` at a time (jobs deleted afterwards)."""
    q = Queue(queue, connection=client, serializer=JSONSerializer)
    fn = registry.resolve("tasks.cpu.trivial")
    datas = [Queue.prepare_data(fn, args=(i,)) for i in range(count)]
    t0 = time.perf_counter()
    with client.pipeline() as pipe:
        many = q.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
    t_many = time.perf_counter() - t0
    few = max(1, count // 10)
    t0 = time.perf_counter()
    single = [q.enqueue(fn, i) for i in range(few)]
    t_single = time.perf_counter() - t0
    q.delete(delete_jobs=True)
    del many, single
    return {"enqueue_many_jobs_per_s": count / t_many, "enqueue_one_by_one_jobs_per_s": few / t_single}


@contextlib.contextmanager
def _stock_workers(url: str, queue: str, count: int, worker_class: str | None) -> Iterator[None]:
    rq_bin = str(Path(sys.executable).with_name("rq"))
    procs = []
    for i in range(count):
        cmd = [rq_bin, "worker", "--burst", "--serializer", "json", "-u", url, "--logging_level", "WARNING",
               "-n", f"stock-{uuid.uuid4().hex[:6]}-{i}", queue]  # fmt: skip
        if worker_class:
            cmd[2:2] = ["-w", worker_class]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      preexec_fn=die_with_parent))  # fmt: skip
    try:
        yield
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stock_reference(client: redis.Redis, url: str, count: int, workers: int, worker_class: str | None) -> Run:
    """Drain `count` trivial jobs with stock `rq worker` processes on a private queue (jobs/s from timestamps)."""
    queue = f"mplab-stock-{uuid.uuid4().hex[:6]}"
    q = Queue(queue, connection=client, serializer=JSONSerializer)
    fn = registry.resolve("tasks.cpu.trivial")
    with client.pipeline() as pipe:
        # a private queue; the jobs expire with their results (result_ttl)
        jobs = q.enqueue_many([Queue.prepare_data(fn, args=(i,), result_ttl=600) for i in range(count)], pipeline=pipe)
        pipe.execute()
    t0 = time.perf_counter()
    with _stock_workers(url, queue, workers, worker_class):
        _wait(client, q, 0, [j.id for j in jobs], timeout=300)
    wall = time.perf_counter() - t0
    results, timing = _fetch(client, [j.id for j in jobs])
    label = "forking Worker" if worker_class is None else worker_class.rsplit(".", 1)[-1]
    return Run(wall, [r["value"] for r in results], workers, {"worker": label, "jobs": count, **timing})
