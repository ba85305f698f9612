"""A buyer of a Redis sale (local process or node job): the start barrier, one purchase in each mode, the outcome rows.

Every mode writes its ledger row in the same atomic step as its counter update (a MULTI, or inside
the Lua script), so a buyer killed at any instant either sold a ticket with a row or sold nothing.

The start barrier (networked races reproducible): each buyer INCRs `arrived`; the one that makes it
reach `party` (the number of buyers that can run at once: the slots of the live nodes) sets `go` and
pushes one token per waiter on `gate`; the others block in BLPOP on `gate`. So the first `party`
buyers (on every node taking part) read the counter within a millisecond or two of each other, then
sleep the race window before writing: in `naive` mode they all sell the same seat, and in `host-lock`
mode the lock holders of different nodes do. A buyer whose party never completes goes on after
`barrier_timeout` seconds (recorded in meta as `barrier_timed_out`). Later buyers pass straight through.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import redis
from redis.exceptions import LockNotOwnedError, WatchError

from tasks import tickets
from tasks.tickets import Outcome
from workers import nodectx
from workers.errors import Unsupported
from workers.tickets.store_redis import HOST, SaleKeys, SaleParams, cached_params, sale_params, set_meta

LOCK_SLEEP = 0.002
"""Seconds between two attempts of a blocked redis-py Lock acquire (redis-py's default 0.1 s would
dominate the sale)."""

# Delete KEYS[1] only while it still holds ARGV[1]: a buyer clears its own `holder` entry, never a successor's.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

Attempt = Callable[[redis.Redis, SaleKeys, SaleParams, Outcome], tuple[int | None, Outcome]]


def arrive_and_wait(r: redis.Redis, p: SaleParams) -> str:
    """The start barrier described in the module docstring; returns how this buyer was released."""
    k = SaleKeys(p.sale_id)
    arrived = int(r.incr(k.key("arrived")))
    if arrived > p.party:
        return "late"
    if arrived == p.party:
        pipe = r.pipeline(transaction=True)
        pipe.set(k.key("go"), time.time(), nx=True)
        if p.party > 1:
            pipe.rpush(k.key("gate"), *([b"1"] * (p.party - 1)))
        pipe.hsetnx(k.meta, "go_time", json.dumps(time.time()))
        pipe.execute()
        return "opened"
    if r.blpop([k.key("gate")], timeout=p.barrier_timeout) is not None:
        return "released"
    if r.set(k.key("go"), time.time(), nx=True):
        set_meta(r, p.sale_id, barrier_timed_out=True, go_time=time.time())
    return "timed out"


def buy(
    r: redis.Redis,
    sale_id: str,
    buyer: str,
    *,
    host_lock: AbstractContextManager[object] | None = None,
    align: Callable[[], object] | None = None,
) -> Outcome:
    """One buyer: pass the start barrier (or `align()`), try to buy in the sale's mode, record the outcome.

    Returns the outcome (buyer, ok, seat or reason, node, pid, ...). A failure row is appended for a
    buyer who gets no ticket; the sale's ledger row is written by the mode itself, atomically with the sale.
    """
    p = sale_params(r, sale_id)
    released = "aligned" if align is not None else None
    if align is not None:
        align()
    else:
        released = arrive_and_wait(r, p)
    row = tickets.ledger_row(
        sale_id, buyer, p.mode, node=nodectx.node_name() or "local", host=HOST, pid=os.getpid(), now=0.0
    )
    k = SaleKeys(sale_id)
    if p.mode == "host-lock":  # naive, inside this node's multiprocessing.Lock
        if host_lock is None:
            raise Unsupported("host-lock mode needs an mplab worker node (no host lock in this process)")
        with host_lock:
            seat, info = _get_window_set(r, k, p, row)
    elif p.mode in ATTEMPTS:
        seat, info = ATTEMPTS[p.mode](r, k, p, row)
    else:
        raise Unsupported(f"unknown ticket mode {p.mode!r}")
    outcome: Outcome = {**row, **info, "released": released, "ok": seat is not None, "time": time.time()}
    if seat is None:
        r.rpush(k.failures, json.dumps(outcome, sort_keys=True))
    else:
        outcome["seat"] = seat
    return outcome


def record_crash(r: redis.Redis, sale_id: str, buyer: str, exc: BaseException) -> bool:
    """A failure row for a buyer whose attempt raised `exc`, unless the ledger already has its outcome.

    The outcome may be there: a sale row is written atomically with the counter update, so an error
    after it (releasing the lock, say) must not make the buyer count as both sold and failed. Buyer
    names are unique within a sale. Returns whether a row was written.
    """
    k = SaleKeys(sale_id)
    pipe = r.pipeline(transaction=False)
    pipe.lrange(k.ledger, 0, -1)
    pipe.lrange(k.failures, 0, -1)
    sales, failures = pipe.execute()
    if any(json.loads(raw).get("buyer") == buyer for raw in [*sales, *failures]):
        return False
    cached = cached_params(sale_id)
    row = tickets.ledger_row(
        sale_id,
        buyer,
        cached.mode if cached is not None else "?",
        node=nodectx.node_name() or "local",
        host=HOST,
        pid=os.getpid(),
        now=time.time(),
    )
    failed: Outcome = {**row, "ok": False, "reason": type(exc).__name__, "error": str(exc)[:200]}
    r.rpush(k.failures, json.dumps(failed, sort_keys=True))
    return True


def _sold_row(row: Outcome, seat: int, info: Outcome) -> str:
    return json.dumps({**row, **info, "seat": seat, "time": time.time()}, sort_keys=True)


def _get_window_set(r: redis.Redis, k: SaleKeys, p: SaleParams, row: Outcome) -> tuple[int | None, Outcome]:
    """The chapter's bug over the network: GET, race window, SET (the SET and the ledger row in one MULTI)."""
    count = int(r.get(k.counter) or 0)
    info: Outcome = {"read": count}
    if count <= 0:
        return None, {**info, "reason": "sold out"}
    time.sleep(p.window)
    seat = tickets.seat_for(p.stock, count)
    pipe = r.pipeline(transaction=True)
    pipe.set(k.counter, count - 1)
    pipe.rpush(k.ledger, _sold_row(row, seat, info))
    pipe.execute()
    return seat, info


def _redis_lock(r: redis.Redis, k: SaleKeys, p: SaleParams, row: Outcome) -> tuple[int | None, Outcome]:
    """GET/window/SET under redis-py's Lock; the write is fenced: it commits only while we still own the lock.

    If the holder dies, the lock key expires after `lock_timeout` seconds and the next buyer gets it; a
    holder that merely stalls past the timeout finds its token gone and sells nothing (reason
    'lock expired') instead of overwriting the counter behind the new holder's back.
    """
    lock = r.lock(k.lock, timeout=p.lock_timeout, sleep=LOCK_SLEEP, blocking_timeout=None)
    waited = time.perf_counter()
    lock.acquire()
    info: Outcome = {"lock_wait_s": round(time.perf_counter() - waited, 6)}
    token = lock.local.token
    holder = json.dumps(
        {"pid": row["pid"], "node": row["node"], "buyer": row["buyer"], "since": time.time(), "token": _text(token)}
    )
    try:
        pipe = r.pipeline(transaction=False)  # who holds the lock (what `mplab tickets report` and tests see)
        pipe.set(k.key("holder"), holder, px=max(1, int(p.lock_timeout * 1000)))
        pipe.get(k.counter)
        count = int(pipe.execute()[1] or 0)
        info["read"] = count
        if count <= 0:
            return None, {**info, "reason": "sold out"}
        time.sleep(p.window)
        seat = tickets.seat_for(p.stock, count)
        with r.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(k.lock)  # type: ignore[no-untyped-call]
                if pipe.get(k.lock) != token:
                    return None, {**info, "reason": "lock expired"}
                pipe.multi()
                pipe.set(k.counter, count - 1)
                pipe.rpush(k.ledger, _sold_row(row, seat, info))
                pipe.execute()
            except WatchError:
                return None, {**info, "reason": "lock expired"}
        return seat, info
    finally:
        try:
            r.eval(_DELETE_IF_EQUAL, 1, k.key("holder"), holder)  # before the release: never a successor's
        finally:
            try:
                lock.release()
            except LockNotOwnedError:
                info["lock_lost"] = True


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _lua(r: redis.Redis, k: SaleKeys, p: SaleParams, row: Outcome) -> tuple[int | None, Outcome]:
    """Check, decrement and ledger append in one server-side step: there is no window to race in."""
    script = r.register_script(tickets.LUA_BUY)
    stamped = json.dumps({**row, "time": time.time()}, sort_keys=True)
    seat = int(script(keys=[k.counter, k.ledger], args=[p.stock, stamped]))
    return (seat, {}) if seat > 0 else (None, {"reason": "sold out"})


def _watch(r: redis.Redis, k: SaleKeys, p: SaleParams, row: Outcome) -> tuple[int | None, Outcome]:
    """Optimistic: WATCH the counter, GET, window, MULTI/DECR+RPUSH/EXEC; retry if anyone wrote meanwhile."""
    attempts = 0
    with r.pipeline(transaction=True) as pipe:
        while True:
            attempts += 1
            try:
                pipe.watch(k.counter)  # type: ignore[no-untyped-call]
                count = int(pipe.get(k.counter) or 0)
                if count <= 0:
                    pipe.unwatch()
                    return None, {"reason": "sold out", "attempts": attempts, "read": count}
                if p.window:
                    time.sleep(p.window)
                seat = tickets.seat_for(p.stock, count)
                info: Outcome = {"attempts": attempts, "read": count}
                pipe.multi()
                pipe.decr(k.counter)
                pipe.rpush(k.ledger, _sold_row(row, seat, info))
                pipe.execute()
                return seat, info
            except WatchError:
                continue


ATTEMPTS: dict[str, Attempt] = {
    "naive": _get_window_set,
    "redis-lock": _redis_lock,
    "atomic": _lua,
    "watch": _watch,
}
"""One purchase attempt per mode (after the barrier, without the failure row): for the benchmark."""
