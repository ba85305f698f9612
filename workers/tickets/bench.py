"""One client, sequential purchase attempts per second for each Redis mode, measured side by side.

Not a test: `mplab tickets bench --json`. Every mode runs its real store path (ledger row included) with a
zero race window on a stock large enough that every attempt sells; `getset` is the bare naive reference
(GET then SET, no ledger), the path the baseline's 9.2k/s naive figure measures. The modes take turns in
blocks of `BLOCK` attempts, so the drift of a shared machine hits all of them alike; the figure per mode
is the median over the repetitions.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import threading
import time
from collections.abc import Callable

import redis

from tasks import tickets
from workers.errors import ResultMismatch
from workers.tickets import redis_buyer, store_redis
from workers.tickets.records import BenchResult, check_bench

MODES: tuple[str, ...] = ("ping", "getset", "naive", "host-lock", "redis-lock", "atomic", "watch")
"""Measured paths: `ping` is the one-round-trip ceiling of this client and machine; `getset` is the bare
GET/SET reference the ratios are stated against."""

BLOCK = 200
"""Attempts one mode makes before the next mode takes its turn."""


def _attempt_fn(r: redis.Redis, mode: str, sale_id: str, stock: int) -> Callable[[], object]:
    """A fresh sale for `mode` and the function making one purchase attempt on it."""
    params = store_redis.SaleParams(sale_id, stock, "atomic" if mode == "getset" else mode, 0.0, 1, 5.0, 1.0)
    store_redis.create_sale(r, params, buyers=stock, extra={"store": "redis", "where": "bench"})
    k = store_redis.SaleKeys(sale_id)
    row = tickets.ledger_row(sale_id, "bench", mode, node="bench", host="bench", pid=os.getpid(), now=0.0)
    if mode == "ping":
        r.set(k.counter, 0)  # sells nothing; measures the bare round trip
        return r.ping
    if mode == "getset":

        def getset() -> object:
            count = int(r.get(k.counter) or 0)
            return r.set(k.counter, count - 1) if count > 0 else None

        return getset
    if mode == "host-lock":
        lock = threading.Lock()  # uncontended: what one client pays for taking a host lock
        naive = redis_buyer.ATTEMPTS["naive"]

        def locked() -> object:
            with lock:
                return naive(r, k, params, row)

        return locked
    attempt = redis_buyer.ATTEMPTS[mode]
    return lambda: attempt(r, k, params, row)


def _discard(r: redis.Redis, sale_ids: list[str]) -> None:
    """Remove the bench's sales (those already gone are fine)."""
    if not sale_ids:
        return
    pipe = r.pipeline(transaction=True)
    for sale_id in sale_ids:
        pipe.delete(*store_redis.SaleKeys(sale_id).all())
    pipe.srem(store_redis.SALES_SET, *sale_ids)
    pipe.execute()


def run(r: redis.Redis, *, attempts: int = 3000, repeats: int = 3) -> BenchResult:
    """Median attempts/s per mode over `repeats` rounds, and ratios to the GET/SET and naive paths."""
    check_bench(attempts, repeats)
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    created: list[str] = []
    try:
        for rep in range(repeats):
            ids = {mode: f"bench-{os.getpid()}-{rep}-{mode}" for mode in MODES}
            created.extend(ids.values())
            fns = {mode: _attempt_fn(r, mode, ids[mode], attempts) for mode in MODES}
            spent = dict.fromkeys(MODES, 0.0)
            for start in range(0, attempts, BLOCK):
                n = min(BLOCK, attempts - start)
                for mode in MODES:
                    fn = fns[mode]
                    t0 = time.perf_counter()
                    for _ in range(n):
                        fn()
                    spent[mode] += time.perf_counter() - t0
            for mode in MODES:
                left = store_redis.counter(r, ids[mode])
                if left != 0:
                    raise ResultMismatch(
                        f"bench {mode}: {left} of {attempts} tickets left, expected every attempt to sell"
                    )
                runs[mode].append(attempts / spent[mode])
            _discard(r, list(ids.values()))  # each round's ledgers go as soon as it is counted
    finally:  # interrupted or failed too: no bench-* sale stays behind
        with contextlib.suppress(redis.RedisError):
            _discard(r, created)
    medians = {mode: statistics.median(values) for mode, values in runs.items()}
    return {
        "attempts": attempts,
        "repeats": repeats,
        "per_s": medians,
        "runs_per_s": runs,
        "ratio_to_getset": {mode: medians[mode] / medians["getset"] for mode in MODES},
        "ratio_to_naive": {mode: medians[mode] / medians["naive"] for mode in MODES},
        "reference_per_s": {"naive": 9200, "atomic (Lua)": 13600, "watch": 4800},
    }
