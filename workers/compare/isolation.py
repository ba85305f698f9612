"""A compare run's footprint in Redis: its private names, its registration, and its clean-up.

Every run has an id; its queues (`mplab-compare-ID...`) and its nodes (`compare-ID-N`) carry it, so
no other client's jobs or nodes mix with its own. The run registers itself in `RUNS` with what it
will leave behind (queues, sales, the ids of jobs it put on a shared queue) and keeps an `alive` key
with a TTL fresh. At exit (Ctrl-C and SIGTERM included) it removes all of that; a later run removes
what a crashed run (its alive key expired, or its pid gone on this host) left.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field

import psutil
import redis
from rq.job import Job
from rq.queue import Queue
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.results import Result
from rq.worker import Worker

from workers import defaults
from workers.tickets import network, store_redis

RUNS = "mplab:compare:runs"
"""Hash: run id -> JSON of what the run may leave in Redis."""

ALIVE_TTL = 600
"""Seconds a run's alive key lives without being renewed (renewed at every step)."""

PREFIX = "mplab-compare-"
"""Queue names of compare runs start with this."""

REGISTRIES = (
    StartedJobRegistry,
    FinishedJobRegistry,
    FailedJobRegistry,
    DeferredJobRegistry,
    ScheduledJobRegistry,
    CanceledJobRegistry,
)


@dataclass
class RunRecord:
    """What one run may leave behind, registered before it creates any of it."""

    run_id: str
    host: str
    pid: int
    started: float
    queues: list[str] = field(default_factory=list)  # private: removed whole
    shared_queue: str | None = None  # a user's queue (--nodes 0): only our job ids are removed from it
    sales: list[str] = field(default_factory=list)

    @staticmethod
    def new() -> RunRecord:
        return RunRecord(uuid.uuid4().hex[:8], socket.gethostname(), os.getpid(), time.time())

    def queue(self, suffix: str = "") -> str:
        return f"{PREFIX}{self.run_id}{suffix}"


def alive_key(run_id: str) -> str:
    return f"mplab:compare:{run_id}:alive"


def jobs_key(run_id: str) -> str:
    return f"mplab:compare:{run_id}:jobs"


class Footprint:
    """The run's registration in Redis, kept current, and removed at the end."""

    def __init__(self, client: redis.Redis, record: RunRecord) -> None:
        self.client, self.record = client, record
        self.last_touch = 0.0

    def save(self) -> None:
        with self.client.pipeline() as pipe:
            pipe.hset(RUNS, self.record.run_id, json.dumps(asdict(self.record)))
            pipe.set(alive_key(self.record.run_id), str(self.record.pid), ex=ALIVE_TTL)
            pipe.execute()
        self.last_touch = time.monotonic()

    def touch(self) -> None:
        if time.monotonic() - self.last_touch > 5:
            self.client.expire(alive_key(self.record.run_id), ALIVE_TTL)
            self.last_touch = time.monotonic()

    def add_queue(self, name: str) -> str:
        self.record.queues.append(name)
        self.save()
        return name

    def add_sale(self, sale_id: str) -> str:
        self.record.sales.append(sale_id)
        self.save()
        return sale_id

    def add_jobs(self, ids: list[str]) -> None:
        """Ids of jobs put on a shared queue (on private queues the queue says whose they are)."""
        if self.record.shared_queue and ids:
            self.client.sadd(jobs_key(self.record.run_id), *ids)

    def remove(self) -> None:
        remove_run(self.client, self.record)


def remove_run(client: redis.Redis, record: RunRecord) -> None:
    """Everything of the run: jobs, results, queues, registries, its nodes' and workers' keys, sales."""
    ids: set[str] = {i.decode() for i in client.smembers(jobs_key(record.run_id))}  # type: ignore[union-attr]
    executions: set[str] = set()
    for name in record.queues:
        ids |= _job_ids(client, name, executions)
    if executions:
        client.delete(*executions)
    for sale in record.sales:  # a sale's buyer jobs, listed by the sale, before the sale goes
        with contextlib.suppress(Exception):
            ids |= set(network.job_ids(client, sale))
    if record.shared_queue and ids:
        _unlist(client, record.shared_queue, ids)
    _delete_jobs(client, ids)
    # an execution a killed slot left unlisted; a node's settlement claim on a run (recovery.claim_key)
    for pattern, part in (("rq:execution:*", 2), (defaults.CLAIM_KEY_PREFIX + "*", 2)):
        for key in client.scan_iter(match=pattern, count=1000):
            if key.decode().split(":")[part] in ids:
                client.delete(key)
    for sale in record.sales:
        with contextlib.suppress(Exception):
            store_redis.delete_sale(client, sale)
    tag = f"compare-{record.run_id}"  # in every queue, node and worker name of the run
    names = [*client.scan_iter(match=f"*{tag}*", count=1000)]
    names += client.scan_iter(match=f"mplab:compare:{record.run_id}:*")
    with client.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.delete(key)
        for name in record.queues:
            pipe.srem(Queue.redis_queues_keys, Queue.redis_queue_namespace_prefix + name)
        pipe.hdel(RUNS, record.run_id)
        pipe.execute()
    for key_set in (Worker.redis_workers_keys, defaults.NODES_SET):
        ours = [m for m in client.smembers(key_set) if tag.encode() in m]
        if ours:
            client.srem(key_set, *ours)


def _job_ids(client: redis.Redis, queue: str, executions: set[str]) -> set[str]:
    """Ids of every job in the queue, its intermediate list (popped, not yet started) and its registries."""
    q = Queue(queue, connection=client)
    ids = set(q.get_job_ids())
    ids |= {i.decode() for i in client.lrange(f"{q.key}:intermediate", 0, -1)}  # type: ignore[union-attr]
    for registry in REGISTRIES:  # the started registry holds "job_id:execution_id"
        for member in client.zrange(registry(queue, connection=client).key, 0, -1):
            text = member.decode() if isinstance(member, bytes) else str(member)
            job_id, _, execution = text.partition(":")
            ids.add(job_id)
            if execution:
                executions.add(f"rq:execution:{job_id}:{execution}")
    return ids


def _unlist(client: redis.Redis, queue: str, ids: set[str]) -> None:
    """Our jobs out of a shared queue: its list, its intermediate list, every registry (and nothing else)."""
    key = Queue.redis_queue_namespace_prefix + queue
    started = StartedJobRegistry(queue, connection=client).key
    members = [m.decode() if isinstance(m, bytes) else str(m) for m in client.zrange(started, 0, -1)]
    running = [m for m in members if m.partition(":")[0] in ids]
    with client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.lrem(key, 0, job_id)
            pipe.lrem(f"{key}:intermediate", 0, job_id)
            for registry in REGISTRIES:
                pipe.zrem(registry(queue, connection=client).key, job_id)
        if running:  # the started registry holds "job_id:execution_id"
            pipe.zrem(started, *running)
        pipe.execute()


def _delete_jobs(client: redis.Redis, ids: set[str]) -> None:
    order = list(ids)
    for start in range(0, len(order), 500):
        part = order[start : start + 500]
        with client.pipeline(transaction=False) as pipe:
            for job_id in part:
                pipe.zrange(f"rq:executions:{job_id}", 0, -1)
            executions = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            for job_id, execs in zip(part, executions, strict=True):
                pipe.delete(
                    Job.key_for(job_id),
                    Job.dependents_key_for(job_id),
                    f"{Job.key_for(job_id)}:dependencies",
                    Result.get_key(job_id),
                    f"rq:executions:{job_id}",
                    *(f"rq:execution:{e.decode()}" for e in execs),
                )
            pipe.execute()


def clean_leftovers(client: redis.Redis) -> list[str]:
    """Remove what crashed runs left (alive key gone, or their pid dead on this host); their ids."""
    cleaned = []
    here = socket.gethostname()
    for run_id, raw in client.hgetall(RUNS).items():
        try:
            record = RunRecord(**json.loads(raw))
        except (ValueError, TypeError):
            client.hdel(RUNS, run_id)
            continue
        gone = not client.exists(alive_key(record.run_id))
        if not gone and record.host == here:
            gone = not _same_process(record.pid, record.started)
        if gone:
            remove_run(client, record)
            cleaned.append(record.run_id)
    return cleaned


def _same_process(pid: int, started: float) -> bool:
    try:
        return psutil.Process(pid).create_time() <= started + 1
    except psutil.Error:
        return False
