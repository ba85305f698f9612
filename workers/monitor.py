"""What `mplab status` shows: queues per registry, nodes with their slots, current jobs and batch progress.

Reads only: node heartbeats (read tolerantly: fields a node does not write are shown as unknown), RQ's worker
registrations (the job each slot runs) and job hashes (function, start time, `meta["progress"]`).
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psutil
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from workers import client as jobclient
from workers.heartbeat import read_nodes
from workers.jobctl import Progress, known_queues

REGISTRIES = ("started", "finished", "failed", "deferred", "scheduled", "canceled")


@dataclass(frozen=True)
class QueueRow:
    """Job counts of one queue: waiting in it, and in each of RQ's registries."""

    queue: str
    queued: int
    started: int
    finished: int
    failed: int
    deferred: int
    scheduled: int
    canceled: int


@dataclass(frozen=True)
class SlotView:
    """One slot of a node (an RQ worker) and the job it runs, if any."""

    name: str
    state: str
    pid: int | None
    job_id: str | None = None
    function: str | None = None
    elapsed_s: float | None = None
    progress: Progress | None = None


@dataclass(frozen=True)
class NodeView:
    """A node as its heartbeat describes it, plus its slots as RQ sees them."""

    name: str
    host: str
    pid: int
    state: str
    age_s: float
    stale: bool
    cpu_percent: float
    rss_bytes: int
    pss_bytes: int
    processes: int
    slots_total: int
    slots_busy: int
    jobs_done: int
    jobs_failed: int
    pool_size: int
    start_method: str
    queues: list[str]
    cores: int
    pool_pids: list[int] | None
    """The node's Pool processes (None: neither the heartbeat nor this host can tell)."""
    slots: list[SlotView] = field(default_factory=list)


@dataclass(frozen=True)
class StatusReport:
    """One snapshot of a Redis: queues, nodes, RQ workers that are not mplab slots."""

    redis: str
    updated_at: str
    queues: list[QueueRow]
    nodes: list[NodeView]
    other_rq_workers: list[str]

    @property
    def empty(self) -> bool:
        """Nothing to show: no job in any queue or registry, no node, no worker."""
        counts = (getattr(row, f) for row in self.queues for f in ("queued", *REGISTRIES))
        return not self.nodes and not self.other_rq_workers and not any(counts)


def queue_rows(client: redis.Redis, names: list[str]) -> list[QueueRow]:
    """Counts per queue and registry in one pipelined round trip."""
    queues = [jobclient.queue(client, name) for name in names]
    with client.pipeline(transaction=False) as pipe:
        for q in queues:
            pipe.llen(q.key)
            for reg in REGISTRIES:
                pipe.zcard(getattr(q, f"{reg}_job_registry").key)
        counts = pipe.execute()
    width = 1 + len(REGISTRIES)
    return [QueueRow(name, *(int(c) for c in counts[i * width : (i + 1) * width])) for i, name in enumerate(names)]


def field_of(node: Any, key: str, default: Any) -> Any:
    """A heartbeat field, whether the record is a dict or a dataclass; `default` if missing or unreadable."""
    value = node.get(key, default) if isinstance(node, dict) else getattr(node, key, default)
    if value is None:
        return default
    if isinstance(default, bool):  # bool("False") is True
        return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes")
    try:
        return type(default)(value) if default is not None and not isinstance(default, list) else value
    except (TypeError, ValueError):
        return default


def _json_list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str | bytes) else []
    except ValueError:
        return []
    return parsed if isinstance(parsed, list) else []


def slot_view(client: redis.Redis, name: str) -> SlotView:
    """A slot from RQ's worker registration and the job it currently runs."""
    worker = SimpleWorker.find_by_key(
        SimpleWorker.redis_worker_namespace_prefix + name, connection=client, serializer=JSONSerializer
    )
    if worker is None:
        return SlotView(name, "gone", None)
    state = str(getattr(worker.get_state(), "value", worker.get_state()))
    job_id = worker.get_current_job_id()
    if not job_id:
        return SlotView(name, state, worker.pid)
    job = Job.fetch_many([job_id], connection=client, serializer=JSONSerializer)[0]
    if job is None:
        return SlotView(name, state, worker.pid, job_id)
    try:
        function = job.func_name or ""
    except Exception:  # noqa: BLE001 - a payload that cannot be read
        function = "?"
    if function == jobclient.BATCH_FUNCTION and len(job.args) > 1:
        function = f"batch of {len(job.args[1])} x {job.args[0]}"
    started = job.started_at.timestamp() if job.started_at else None
    elapsed = round(time.time() - started, 1) if started else None
    done, total = jobclient.progress_of(job.meta)
    progress = Progress(done, total) if total else None
    return SlotView(name, state, worker.pid, job_id, function, elapsed, progress)


def _pool_pids(node: Any, slots: list[SlotView]) -> list[int] | None:
    recorded = field_of(node, "pool_pids", None)
    if recorded is not None:
        return [int(p) for p in _json_list(recorded)]
    if field_of(node, "host", "") != socket.gethostname():
        return None
    try:  # same host: the node's children that are not its slots
        children = psutil.Process(field_of(node, "pid", 0)).children()
    except (psutil.Error, ValueError):
        return None
    slot_pids = {slot.pid for slot in slots}
    return sorted(p.pid for p in children if p.pid not in slot_pids)


def node_view(client: redis.Redis, node: Any) -> NodeView:
    slots = [slot_view(client, str(name)) for name in _json_list(field_of(node, "slots", []))]
    return NodeView(
        name=field_of(node, "name", "?"),
        host=field_of(node, "host", "?"),
        pid=field_of(node, "pid", 0),
        state=field_of(node, "state", "?"),
        age_s=field_of(node, "age_s", 0.0),
        stale=bool(field_of(node, "stale", False)),
        cpu_percent=field_of(node, "cpu_percent", 0.0),
        rss_bytes=field_of(node, "rss_bytes", 0),
        pss_bytes=field_of(node, "pss_bytes", 0),
        processes=field_of(node, "processes", 0),
        slots_total=field_of(node, "slots_total", len(slots)),
        slots_busy=field_of(node, "slots_busy", 0),
        jobs_done=field_of(node, "jobs_done", 0),
        jobs_failed=field_of(node, "jobs_failed", 0),
        pool_size=field_of(node, "pool_size", 0),
        start_method=field_of(node, "start_method", "?"),
        queues=_queue_names(node),
        cores=field_of(node, "cores", 0),
        pool_pids=_pool_pids(node, slots),
        slots=slots,
    )


def live_nodes(client: redis.Redis) -> list[Any]:
    """Heartbeat records of nodes that are not stale."""
    return [n for n in read_nodes(client) if not field_of(n, "stale", False)]


def _queue_names(node: Any) -> list[str]:
    """The queues a node serves, in priority order ([] if its heartbeat does not say)."""
    queues = field_of(node, "queues", None)
    if queues is None:
        return []
    names = _json_list(queues) if str(queues).startswith("[") else str(queues).split(",")
    return [str(n).strip() for n in names if str(n).strip()]


def serves(node: Any, queue_name: str) -> bool:
    """Whether a node's heartbeat says it takes jobs from `queue_name` (unknown: assume it does)."""
    names = _queue_names(node)
    return not names or queue_name in names


def snapshot(client: redis.Redis, configured: tuple[str, ...], where: str) -> StatusReport:
    """Queues (configured ones and any other RQ knows), nodes with slots, and foreign RQ workers."""
    nodes = [node_view(client, n) for n in read_nodes(client)]
    ours = {slot.name for node in nodes for slot in node.slots}
    others = sorted(w.name for w in SimpleWorker.all(connection=client) if w.name not in ours)
    return StatusReport(
        redis=where,
        updated_at=datetime.now(UTC).astimezone().isoformat(timespec="seconds"),
        queues=queue_rows(client, known_queues(client, configured)),
        nodes=nodes,
        other_rq_workers=others,
    )
