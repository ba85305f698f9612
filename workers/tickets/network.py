"""Networked sales: buyers are RQ jobs on the worker nodes; enqueue them, follow them, count from the ledger."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis

from tasks import tickets
from workers import client, defaults, heartbeat
from workers.errors import JobTimeout
from workers.redis_server import Conn
from workers.settings import Settings, machine_facts
from workers.tickets import store_redis
from workers.tickets.node_job import BUY
from workers.tickets.records import (
    DEFAULT_WAIT_TIMEOUT,
    NETWORK_MAX_BUYERS,
    JobStates,
    SaleMeta,
    SaleReport,
    SaleSpec,
    Throughput,
    check_wait_timeout,
    new_sale_id,
)

BARRIER_TIMEOUT = 3.0
"""Seconds a networked buyer waits at the start barrier for its party before going on alone."""

POLL_INTERVAL = 0.1
"""Seconds between two progress reads while waiting for a sale."""


def live_nodes(r: redis.Redis, queue: str) -> dict[str, int]:
    """Worker nodes that can run this sale's buyers (fresh heartbeat, serving `queue`) and their slot counts."""
    return {node.name: node.slots_total for node in heartbeat.live_nodes(r, queue)}


def auto_party(buyers: int, nodes: dict[str, int]) -> int:
    """How many buyers can run at once: the slots (= Pool processes) of all live nodes, at most `buyers`."""
    slots = sum(nodes.values()) or defaults.POOL_SIZE_FALLBACK
    return max(1, min(buyers, slots))


def check(settings: Settings, spec: SaleSpec, timeout: float) -> SaleSpec:
    """`spec` if a networked sale can run with it (and `timeout`), else ConfigError: before any Redis is sought."""
    spec.check(tickets.REDIS_MODES, max_buyers=NETWORK_MAX_BUYERS)
    check_wait_timeout(timeout)
    settings.check_queue(spec.queue)
    return spec


def submit(
    settings: Settings,
    conn: Conn,
    spec: SaleSpec,
    *,
    wait: bool = False,
    timeout: float = DEFAULT_WAIT_TIMEOUT,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> SaleReport:
    """Create a Redis sale and enqueue its buyers; with `wait`, follow it to the end and report it.

    The worker nodes must reach `conn`: the caller resolves a Redis that outlives it (never a private
    embedded one, which no node could reach and which would vanish with the command).
    """
    check(settings, spec, timeout)
    result = enqueue_sale(conn.client, new_sale_id(), spec)
    result["redis"] = conn.where
    if wait:
        result.update(follow(conn.client, result["sale_id"], timeout=timeout, on_progress=on_progress))
    result["machine"] = machine_facts(settings.start_method)
    return result


def enqueue_sale(r: redis.Redis, sale_id: str, spec: SaleSpec) -> SaleReport:
    """Create the sale, then enqueue its buyers (one job per `spec.per_job` buyers) in one pipeline."""
    nodes = live_nodes(r, spec.queue)
    buyers, per_job = spec.buyers, spec.per_job
    # more than `buyers` would wait for buyers never coming
    party = min(spec.party, buyers) if spec.party else auto_party(buyers, nodes)
    params = store_redis.params_for(sale_id, spec, party=party, barrier_timeout=BARRIER_TIMEOUT)
    names = tickets.buyer_names(buyers)
    chunks = [names[i : i + per_job] for i in range(0, buyers, per_job)]
    extra: SaleMeta = {"store": "redis", "where": "nodes", "per_job": per_job, "queue": spec.queue, "jobs": len(chunks)}
    store_redis.create_sale(r, params, buyers=buyers, extra={**extra, "nodes_at_submit": nodes})
    calls = []
    for chunk in chunks:
        args: list[Any]
        if per_job == 1:
            func, args = BUY, [sale_id, chunk[0]]
        else:
            func, args = client.BATCH_FUNCTION, [BUY, [[sale_id, name] for name in chunk], 1]
        description = f"ticket sale {sale_id}: {len(chunk)} buyer(s) from {chunk[0]}"
        calls.append(client.Call(func, args, description=description, tasks=len(chunk)))
    jobs_key = store_redis.SaleKeys(sale_id).jobs
    submitted = time.time()
    jobs = client.enqueue_many(
        r, spec.queue, calls, also=lambda pipe, queued: pipe.rpush(jobs_key, *[job.id for job in queued])
    )
    store_redis.set_meta(r, sale_id, submitted=submitted)
    return {
        "sale_id": sale_id,
        "mode": spec.mode,
        "stock": spec.stock,
        "buyers": buyers,
        "per_job": per_job,
        "jobs": len(jobs),
        "queue": spec.queue,
        "party": party,
        "window_s": spec.window,
        "nodes_at_submit": nodes,
        "enqueue_s": time.time() - submitted,
    }


def job_ids(r: redis.Redis, sale_id: str) -> list[str]:
    return [x.decode() for x in r.lrange(store_redis.SaleKeys(sale_id).jobs, 0, -1)]  # type: ignore[union-attr]


def job_states(r: redis.Redis, sale_id: str) -> JobStates:
    """How the sale's jobs stand (counts per status, 'expired' once a hash is gone) and the first failure."""
    states = client.states(r, job_ids(r, sale_id))
    counts = Counter("expired" if state == "missing" else state for state in states.values())
    failed = [job_id for job_id, state in states.items() if state == "failed"]
    first_error = (client.fetch_results(r, failed[:1])[0].reason or "failed") if failed else None
    return {"total": len(states), "by_status": dict(sorted(counts.items())), "first_error": first_error}


class _AllCounted(Exception):
    """Every buyer has an outcome in the ledger: stop waiting for the jobs to end."""


def follow(
    r: redis.Redis,
    sale_id: str,
    *,
    timeout: float,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> SaleReport:
    """Follow the sale until every buyer has an outcome (or all its jobs ended); then its report.

    `on_progress(attempted, buyers, sold)` is called from the ledger's counts at each poll of the waiter.
    """
    buyers = int(store_redis.load_meta(r, sale_id)["buyers"])

    def counted(_jobs_done: int, _jobs: int) -> None:
        try:
            sold, refused = store_redis.progress(r, sale_id)
        except client.LOST:
            return  # the waiter rides out a Redis blip; the counts come back with it
        if on_progress is not None:
            on_progress(sold + refused, buyers, sold)
        if sold + refused >= buyers:
            raise _AllCounted

    try:
        counted(0, 0)
        outcome = client.wait(r, job_ids(r, sale_id), timeout=timeout, on_progress=counted, poll=POLL_INTERVAL)
    except _AllCounted:
        return report(r, sale_id)
    if outcome.timed_out:
        sold, refused = store_redis.progress(r, sale_id)
        raise JobTimeout(
            f"ticket sale {sale_id}: {sold + refused}/{buyers} buyers done after {timeout:.0f} s; "
            "are worker nodes (`mplab worker`) running on this Redis?"
        )
    return report(r, sale_id)


def report(r: redis.Redis, sale_id: str) -> SaleReport:
    """The sale's counted outcome from its ledger, plus throughput and (for networked sales) its jobs."""
    meta = store_redis.load_meta(r, sale_id)
    sales, failures = store_redis.rows(r, sale_id)
    summary = tickets.summarize(
        sales,
        failures,
        stock=int(meta["stock"]),
        buyers=int(meta["buyers"]),
        final_counter=store_redis.counter(r, sale_id),
    )
    times = [float(row["time"]) for row in sales + failures]
    start = meta.get("submitted") or meta.get("created")
    throughput: Throughput = {}
    if times and start:
        elapsed = max(max(times) - float(start), 1e-9)
        throughput = {
            "elapsed_s": elapsed,
            "purchases_per_s": len(sales) / elapsed,
            "attempts_per_s": (len(sales) + len(failures)) / elapsed,
        }
        if meta.get("go_time"):
            throughput["after_go_s"] = max(times) - float(meta["go_time"])
    result: SaleReport = {
        "sale_id": sale_id,
        "store": "redis",
        "mode": meta["mode"],
        "meta": meta,
        "summary": summary,
        "throughput": throughput,
        "outcomes": sales + failures,
    }
    if meta.get("where") == "nodes":
        result["job_states"] = job_states(r, sale_id)
    return result
