"""The ticket sale in `mplab compare`: each Redis mode with buyers as local processes and as RQ jobs.

Sale ids are made here and registered with the run before a sale starts, so an interrupted run's
sales are removed with the rest of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from multiprocessing.context import BaseContext

import redis

from tasks import tickets
from workers.compare.records import SaleRow
from workers.errors import ResultMismatch
from workers.tickets import local, network, store_redis
from workers.tickets.records import DEFAULT_NETWORK_WINDOW, SaleReport, SaleSpec, new_sale_id

SAFE_SALE_MODES = ("redis-lock", "atomic", "watch")  # must never oversell, wherever the buyers run


def _row(mode: str, where: str, result: SaleReport) -> SaleRow:
    summary = result["summary"]
    return SaleRow(
        mode=mode,
        where=where,
        stock=summary["stock"],
        buyers=summary["buyers"],
        sold=summary["sold"],
        oversold=summary["oversold"],
        sold_twice=summary["seats_sold_twice"],
        purchases_per_s=round(result.get("throughput", {}).get("purchases_per_s", 0.0), 1),
        correct=summary["oversold"] == 0 and summary["seats_sold_twice"] == 0,
    )


def measure(
    ctx: BaseContext,
    client: redis.Redis,
    url: str,
    queue: str,
    sale: tuple[int, int, int],
    rq_batched: bool,
    register: Callable[[str], str],
    step: Callable[[str], None],
) -> list[SaleRow]:
    """Every Redis mode: local buyer processes, then RQ jobs with one buyer per job (and K per job)."""
    stock, buyers, per_job = sale
    rows = []
    for mode in tickets.REDIS_MODES:
        step(f"ticket sale: {mode}")
        spec = SaleSpec(mode, stock, buyers, DEFAULT_NETWORK_WINDOW, queue=queue)
        sale_id = register(new_sale_id())
        rows.append(_row(mode, "local processes", local.run_redis_sale(ctx, url, client, sale_id, spec)))
        store_redis.delete_sale(client, sale_id)
        for k in (1, per_job) if rq_batched else (1,):
            sale_id = register(new_sale_id())
            network.enqueue_sale(client, sale_id, dataclasses.replace(spec, per_job=k))
            rows.append(_row(mode, f"RQ, {k} buyer(s)/job", network.follow(client, sale_id, timeout=120)))
    wrong = [r for r in rows if r.mode in SAFE_SALE_MODES and not r.correct]
    if wrong:
        raise ResultMismatch(f"ticket sale: {wrong[0].mode} ({wrong[0].where}) oversold; it must never")
    return rows
