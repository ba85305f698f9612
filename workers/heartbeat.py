"""A node's heartbeat in Redis: CPU %, RSS of its process tree, slots, jobs done/failed (with a TTL).

`Heartbeat` is the record: `Heart.beat` writes it as a hash, `read_nodes` reads it back (tolerantly: a field
a node did not write, or wrote unreadably, takes its default), and `status`, `compare` and `tickets` use it.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace

import psutil
import redis
from rq.worker import SimpleWorker

from workers import defaults
from workers.settings import Settings


def node_key(name: str) -> str:
    return defaults.NODE_KEY_PREFIX + name


def worker_key(name: str) -> str:
    return SimpleWorker.redis_worker_namespace_prefix + name


@dataclass(frozen=True)
class NodeFacts:
    """What a node states once, at start: its Pool size, start method, the queues it serves, its cores."""

    pool_size: int
    start_method: str
    queues: tuple[str, ...]
    cores: int

    @staticmethod
    def of(settings: Settings) -> NodeFacts:
        return NodeFacts(settings.pool_size, settings.start_method, settings.queues, os.cpu_count() or 0)


@dataclass(frozen=True)
class Heartbeat:
    """One node's heartbeat: what `Heart.beat` writes and `read_nodes` reads back."""

    name: str
    host: str = "?"
    pid: int = 0
    python: str = "?"
    started_at: float = 0.0
    pool_size: int = 0
    start_method: str = "?"
    queues: tuple[str, ...] = ()
    """The queues the node serves, in priority order (): its heartbeat does not say)."""
    cores: int = 0
    state: str = "?"
    last_beat: float = 0.0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    pss_bytes: int = 0
    processes: int = 0
    slots_total: int = 0
    slots_busy: int = 0
    jobs_done: int = 0
    jobs_failed: int = 0
    slots: tuple[str, ...] = ()
    """Names of the node's slots (RQ workers)."""
    pool_pids: tuple[int, ...] | None = None
    """The node's Pool processes (None: the heartbeat does not say)."""
    age_s: float = 0.0
    """Seconds since the beat, when it was read (0 as written)."""

    @property
    def stale(self) -> bool:
        """Not renewed for longer than `STALE_AFTER`: the node may be gone."""
        return self.age_s > defaults.STALE_AFTER

    def serves(self, queue: str) -> bool:
        """Whether the node takes jobs from `queue`."""
        return queue in self.queues

    def to_hash(self) -> dict[str, str]:
        """The Redis hash: numbers as text, `queues` comma-separated, `slots` and `pool_pids` as JSON lists."""
        out = {k: str(v) for k, v in asdict(self).items() if k not in ("name", "age_s", "queues", "slots", "pool_pids")}
        out |= {"queues": ",".join(self.queues), "slots": json.dumps(list(self.slots))}
        if self.pool_pids is not None:
            out["pool_pids"] = json.dumps(list(self.pool_pids))
        return out

    @staticmethod
    def from_hash(name: str, row: Mapping[str, str], now: float) -> Heartbeat:
        """The record from a hash as `to_hash` writes it; a missing or unreadable field keeps its default."""
        values: dict[str, object] = {}
        for f in fields(Heartbeat):
            raw = row.get(f.name)
            if raw is None or f.name in ("name", "age_s"):
                continue
            try:
                if f.name == "queues":
                    values[f.name] = tuple(q.strip() for q in raw.split(",") if q.strip())
                elif f.name in ("slots", "pool_pids"):
                    kind = str if f.name == "slots" else int
                    values[f.name] = tuple(kind(str(x)) for x in _json_list(raw))
                elif f.type in ("int", "float"):
                    values[f.name] = (int if f.type == "int" else float)(raw)
                else:
                    values[f.name] = raw
            except (TypeError, ValueError):
                continue
        beat = replace(Heartbeat(name), **values)  # type: ignore[arg-type]  # each value parsed as its field's type
        return replace(beat, age_s=round(now - beat.last_beat, 2))


def _json_list(raw: str) -> list[object]:
    parsed = json.loads(raw)
    if not isinstance(parsed, list):
        raise ValueError(f"not a JSON list: {raw[:40]!r}")
    return parsed


class Heart:
    """Measures the node's process tree with psutil and writes the heartbeat hash."""

    def __init__(self, client: redis.Redis, name: str, facts: NodeFacts) -> None:
        self.client = client
        self.name = name
        self.me = psutil.Process()
        self.procs: dict[int, psutil.Process] = {}
        self.static = Heartbeat(  # what does not change from beat to beat
            name, host=socket.gethostname(), pid=os.getpid(), python=platform.python_version(),
            started_at=time.time(), pool_size=facts.pool_size, start_method=facts.start_method,
            queues=facts.queues, cores=facts.cores,
        )  # fmt: skip

    def tree(self) -> list[psutil.Process]:
        """The node and all its descendants; Process objects are kept so cpu_percent has a baseline."""
        current = [self.me, *self.me.children(recursive=True)]
        alive = {}
        for proc in current:
            alive[proc.pid] = self.procs.get(proc.pid, proc)
        self.procs = alive
        return list(alive.values())

    def measure(self) -> tuple[float, int, int, int]:
        """CPU % and RSS summed over the tree, PSS summed (shared pages counted once), process count.

        With fork, children share the node's pages copy-on-write: the RSS sum counts them once per
        process, the PSS sum splits them, so it is what the tree really costs.
        """
        cpu, rss, pss, count = 0.0, 0, 0, 0
        for proc in self.tree():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    pss += getattr(proc.memory_full_info(), "pss", 0)
                count += 1
            except psutil.Error:
                continue
        return cpu, rss, pss, count

    def beat(self, slots: list[str], state: str, pool_pids: list[int] | None = None) -> Heartbeat:
        """Write one heartbeat; returns what was written."""
        with self.client.pipeline() as pipe:
            for slot in slots:
                pipe.hmget(worker_key(slot), "state", "successful_job_count", "failed_job_count")
            rows = pipe.execute()
        busy = done = failed = 0
        for row in rows:
            st, ok, bad = (v.decode() if isinstance(v, bytes) else (v or "") for v in row)
            busy += st == "busy"
            done += int(ok or 0)
            failed += int(bad or 0)
        cpu, rss, pss, count = self.measure()
        beat = replace(
            self.static, state=state, last_beat=time.time(), cpu_percent=round(cpu, 1), rss_bytes=rss,
            pss_bytes=pss, processes=count, slots_total=len(slots), slots_busy=busy, jobs_done=done,
            jobs_failed=failed, slots=tuple(slots), pool_pids=tuple(pool_pids or ()),
        )  # fmt: skip
        with self.client.pipeline() as pipe:
            pipe.hset(node_key(self.name), mapping={k: v for k, v in beat.to_hash().items()})
            pipe.expire(node_key(self.name), defaults.HEARTBEAT_TTL)
            pipe.sadd(defaults.NODES_SET, self.name)
            pipe.execute()
        return beat


def read_nodes(client: redis.Redis) -> list[Heartbeat]:
    """Every node with a live heartbeat key, with its age (`stale` if not renewed for too long)."""
    names = sorted(n.decode() for n in client.smembers(defaults.NODES_SET))  # type: ignore[union-attr]
    with client.pipeline() as pipe:
        for name in names:
            pipe.hgetall(node_key(name))
        rows = pipe.execute()
    nodes, gone = [], []
    now = time.time()
    for name, row in zip(names, rows, strict=True):
        if not row:
            gone.append(name)
            continue
        nodes.append(Heartbeat.from_hash(name, {k.decode(): v.decode() for k, v in row.items()}, now))
    if gone:
        client.srem(defaults.NODES_SET, *gone)
    return nodes


def live_nodes(client: redis.Redis, queue: str | None = None) -> list[Heartbeat]:
    """Nodes whose heartbeat is not stale (and that serve `queue`, if given)."""
    return [n for n in read_nodes(client) if not n.stale and (queue is None or n.serves(queue))]
