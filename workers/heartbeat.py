"""A node's heartbeat in Redis: CPU %, RSS of its process tree, slots, jobs done/failed (with a TTL)."""

from __future__ import annotations

import json
import os
import platform
import socket
import time
from typing import Any

import psutil
import redis
from rq.worker import SimpleWorker

from workers import defaults


def node_key(name: str) -> str:
    return defaults.NODE_KEY_PREFIX + name


def worker_key(name: str) -> str:
    return SimpleWorker.redis_worker_namespace_prefix + name


class Heart:
    """Measures the node's process tree with psutil and writes the heartbeat hash."""

    def __init__(self, client: redis.Redis, name: str, static: dict[str, Any]) -> None:
        self.client = client
        self.name = name
        self.me = psutil.Process()
        self.procs: dict[int, psutil.Process] = {}
        self.static = {
            **static,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            "started_at": time.time(),
        }

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

    def beat(self, slots: list[str], state: str, pool_pids: list[int] | None = None) -> dict[str, Any]:
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
        beat = {
            **self.static,
            "state": state,
            "last_beat": time.time(),
            "cpu_percent": round(cpu, 1),
            "rss_bytes": rss,
            "pss_bytes": pss,
            "processes": count,
            "slots_total": len(slots),
            "slots_busy": busy,
            "jobs_done": done,
            "jobs_failed": failed,
            "slots": json.dumps(slots),
            "pool_pids": json.dumps(pool_pids or []),
        }
        with self.client.pipeline() as pipe:
            pipe.hset(node_key(self.name), mapping={k: str(v) for k, v in beat.items()})
            pipe.expire(node_key(self.name), defaults.HEARTBEAT_TTL)
            pipe.sadd(defaults.NODES_SET, self.name)
            pipe.execute()
        return beat


def read_nodes(client: redis.Redis) -> list[dict[str, Any]]:
    """Every node with a live heartbeat key, with its age and whether it is stale."""
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
        data: dict[str, Any] = {k.decode(): v.decode() for k, v in row.items()}
        for key in ("cpu_percent", "last_beat", "started_at"):
            data[key] = float(data.get(key, 0))
        for key in (
            "rss_bytes",
            "pss_bytes",
            "slots_total",
            "slots_busy",
            "jobs_done",
            "jobs_failed",
            "pid",
            "processes",
        ):
            data[key] = int(data.get(key, 0))
        data["name"] = name
        data["age_s"] = round(now - data["last_beat"], 2)
        data["stale"] = data["age_s"] > defaults.STALE_AFTER
        nodes.append(data)
    if gone:
        client.srem(defaults.NODES_SET, *gone)
    return nodes
