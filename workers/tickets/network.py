"""Networked sales: enqueue buyer jobs for the worker nodes, follow them, count from the ledger."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from tasks import tickets
from tasks.batch import run_batch
from tasks.registry import name_of
from workers import defaults
from workers.errors import LabError
from workers.heartbeat import read_nodes
from workers.tickets import store_redis
from workers.tickets.jobs import BUY

DEFAULT_WINDOW = 0.02
"""Seconds between a networked buyer's GET and its SET: long against a Redis round trip (~0.15 ms), short
enough that 200 buyers finish in seconds."""

BARRIER_TIMEOUT = 3.0
"""Seconds a networked buyer waits at the start barrier for its party before going on alone."""

POLL_INTERVAL = 0.1
"""Seconds between two progress reads while waiting for a sale."""

TERMINAL = {"finished", "failed", "stopped", "canceled"}


def live_nodes(r: redis.Redis, queue: str) -> dict[str, int]:
    """Worker nodes that can run this sale's buyers (fresh heartbeat, serving `queue`) and their slot counts."""
    found: dict[str, int] = {}
    for node in read_nodes(r):
        served = {q.strip() for q in str(node.get("queues", "")).split(",")}
        if not node["stale"] and queue in served:
            found[str(node["name"])] = int(node["slots_total"])
    return found


def auto_party(buyers: int, nodes: dict[str, int]) -> int:
    """How many buyers can run at once: the slots (= Pool processes) of all live nodes, at most `buyers`."""
    slots = sum(nodes.values()) or defaults.POOL_SIZE_FALLBACK
    return max(1, min(buyers, slots))


def submit(
    r: redis.Redis,
    sale_id: str,
    *,
    stock: int,
    buyers: int,
    mode: str,
    per_job: int,
    window: float,
    lock_timeout: float,
    party: int,
    queue: str,
) -> dict[str, Any]:
    """Create the sale, then enqueue its buyers (one job per `per_job` buyers) in one pipeline."""
    nodes = live_nodes(r, queue)
    party = min(party, buyers) if party else auto_party(buyers, nodes)  # more would wait for buyers never coming
    params = store_redis.SaleParams(sale_id, stock, mode, window, party, lock_timeout, BARRIER_TIMEOUT)
    names = tickets.buyer_names(buyers)
    chunks = [names[i : i + per_job] for i in range(0, buyers, per_job)]
    extra = {"store": "redis", "where": "nodes", "per_job": per_job, "queue": queue, "jobs": len(chunks)}
    store_redis.create_sale(r, params, buyers=buyers, extra={**extra, "nodes_at_submit": nodes})
    datas = []
    for i, chunk in enumerate(chunks):
        args: list[Any]
        if per_job == 1:
            func, args = BUY, [sale_id, chunk[0]]
        else:
            func, args = name_of(run_batch), [BUY, [[sale_id, name] for name in chunk], 1]
        datas.append(
            Queue.prepare_data(
                func,
                args=args,
                timeout=defaults.JOB_TIMEOUT,
                result_ttl=defaults.RESULT_TTL,
                job_id=f"ticket-{sale_id}-{i:05d}",
                description=f"ticket sale {sale_id}: {len(chunk)} buyer(s) from {chunk[0]}",
            )
        )
    q = Queue(queue, connection=r, serializer=JSONSerializer)
    submitted = time.time()
    with r.pipeline() as pipe:
        jobs = q.enqueue_many(datas, pipeline=pipe)
        pipe.rpush(store_redis.SaleKeys(sale_id).jobs, *[job.id for job in jobs])
        pipe.execute()
    store_redis.set_meta(r, sale_id, submitted=submitted)
    return {
        "sale_id": sale_id,
        "mode": mode,
        "stock": stock,
        "buyers": buyers,
        "per_job": per_job,
        "jobs": len(jobs),
        "queue": queue,
        "party": party,
        "window_s": window,
        "nodes_at_submit": nodes,
        "enqueue_s": time.time() - submitted,
    }


def job_ids(r: redis.Redis, sale_id: str) -> list[str]:
    return [x.decode() for x in r.lrange(store_redis.SaleKeys(sale_id).jobs, 0, -1)]  # type: ignore[union-attr]


def job_states(r: redis.Redis, sale_id: str) -> dict[str, Any]:
    """How the sale's jobs stand (counts per status) and the first failure's last line."""
    ids = job_ids(r, sale_id)
    counts: Counter[str] = Counter()
    first_error = None
    for job in Job.fetch_many(ids, connection=r, serializer=JSONSerializer):
        if job is None:
            counts["expired"] += 1
            continue
        status = job.get_status(refresh=False)
        state = str(getattr(status, "value", status))
        counts[state] += 1
        if state == "failed" and first_error is None:
            latest = job.latest_result()
            text = (getattr(latest, "exc_string", None) or "").strip()
            first_error = text.splitlines()[-1] if text else "failed"
    return {"total": len(ids), "by_status": dict(sorted(counts.items())), "first_error": first_error}


def wait(
    r: redis.Redis,
    sale_id: str,
    *,
    timeout: float,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> dict[str, Any]:
    """Follow the sale until every buyer has an outcome (or all its jobs ended); then its report."""
    meta = store_redis.load_meta(r, sale_id)
    buyers = int(meta["buyers"])
    deadline = time.monotonic() + timeout
    next_job_check = time.monotonic() + 1.0
    while True:
        sold, refused = store_redis.progress(r, sale_id)
        if on_progress is not None:
            on_progress(sold + refused, buyers, sold)
        if sold + refused >= buyers:
            break
        now = time.monotonic()
        if now >= next_job_check:
            states = job_states(r, sale_id)
            if sum(n for s, n in states["by_status"].items() if s in TERMINAL | {"expired"}) == states["total"]:
                break
            next_job_check = now + 1.0
        if now >= deadline:
            raise LabError(
                f"ticket sale {sale_id}: {sold + refused}/{buyers} buyers done after {timeout:.0f} s; "
                "are worker nodes (`mplab worker`) running on this Redis?"
            )
        time.sleep(POLL_INTERVAL)
    return report(r, sale_id)


def report(r: redis.Redis, sale_id: str) -> dict[str, Any]:
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
    throughput: dict[str, Any] = {}
    if times and start:
        elapsed = max(max(times) - float(start), 1e-9)
        throughput = {
            "elapsed_s": elapsed,
            "purchases_per_s": len(sales) / elapsed,
            "attempts_per_s": (len(sales) + len(failures)) / elapsed,
        }
        if meta.get("go_time"):
            throughput["after_go_s"] = max(times) - float(meta["go_time"])
    result: dict[str, Any] = {
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
