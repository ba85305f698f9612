"""What `mplab status` shows: queues per registry, nodes with their slots, current jobs and batch progress.

Reads only: node heartbeats (`workers.heartbeat.Heartbeat`: fields a node does not write are shown as unknown),
RQ's worker registrations (the job each slot runs) and job hashes (function, start time, `meta["progress"]`).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil
import redis
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from workers import client as jobclient
from workers.heartbeat import Heartbeat, read_nodes
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


def _pool_pids(node: Heartbeat, slots: list[SlotView]) -> list[int] | None:
    if node.pool_pids is not None:
        return list(node.pool_pids)
    if node.host != socket.gethostname():
        return None
    try:  # same host: the node's children that are not its slots
        children = psutil.Process(node.pid).children()
    except (psutil.Error, ValueError):
        return None
    slot_pids = {slot.pid for slot in slots}
    return sorted(p.pid for p in children if p.pid not in slot_pids)


def node_view(client: redis.Redis, node: Heartbeat) -> NodeView:
    slots = [slot_view(client, name) for name in node.slots]
    return NodeView(
        name=node.name,
        host=node.host,
        pid=node.pid,
        state=node.state,
        age_s=node.age_s,
        stale=node.stale,
        cpu_percent=node.cpu_percent,
        rss_bytes=node.rss_bytes,
        pss_bytes=node.pss_bytes,
        processes=node.processes,
        slots_total=node.slots_total or len(slots),
        slots_busy=node.slots_busy,
        jobs_done=node.jobs_done,
        jobs_failed=node.jobs_failed,
        pool_size=node.pool_size,
        start_method=node.start_method,
        queues=list(node.queues),
        cores=node.cores,
        pool_pids=_pool_pids(node, slots),
        slots=slots,
    )


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
