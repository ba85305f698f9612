"""Redis store: one sale = a counter, a ledger and a few coordination keys under `mplab:sale:{id}:`.

    mplab:sales                  set of sale ids
    mplab:sale:{id}:meta         hash: stock, buyers, mode, window, party, timeouts, timestamps
    mplab:sale:{id}:counter      tickets left (what naive buyers GET and SET)
    mplab:sale:{id}:ledger       list of JSON rows, one per successful purchase (seat, buyer, node, pid, time)
    mplab:sale:{id}:failures     list of JSON rows, one per buyer who got no ticket (and why)
    mplab:sale:{id}:lock         the redis-py Lock of `redis-lock` mode (`holder`: who has it, same TTL)
    mplab:sale:{id}:arrived/gate/go   the start barrier of networked buyers
    mplab:sale:{id}:jobs         list of the sale's RQ job ids

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
import socket
import time
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import LockNotOwnedError, WatchError

from tasks import registry, tickets
from workers.errors import NotFound, Unsupported

PREFIX = "mplab:sale:"
"""Key prefix of a sale's keys."""

SALES_SET = "mplab:sales"
"""Redis set of all sale ids."""

LOCK_SLEEP = 0.002
"""Seconds between two attempts of a blocked redis-py Lock acquire (redis-py's default 0.1 s would
dominate the sale)."""

_HOST = socket.gethostname()
_params_cache: dict[str, SaleParams] = {}


@dataclass(frozen=True)
class SaleKeys:
    """The Redis keys of one sale."""

    sale_id: str

    def key(self, part: str) -> str:
        return f"{PREFIX}{self.sale_id}:{part}"

    @property
    def meta(self) -> str:
        return self.key("meta")

    @property
    def counter(self) -> str:
        return self.key("counter")

    @property
    def ledger(self) -> str:
        return self.key("ledger")

    @property
    def failures(self) -> str:
        return self.key("failures")

    @property
    def lock(self) -> str:
        return self.key("lock")

    @property
    def jobs(self) -> str:
        return self.key("jobs")

    def coordination(self) -> list[str]:
        return [self.key("arrived"), self.key("gate"), self.key("go"), self.lock, self.key("holder")]

    def all(self) -> list[str]:
        return [self.meta, self.counter, self.ledger, self.failures, self.jobs, *self.coordination()]


@dataclass(frozen=True)
class SaleParams:
    """What a buyer needs to know about its sale (read once per process from the meta hash)."""

    sale_id: str
    stock: int
    mode: str
    window: float
    party: int
    lock_timeout: float
    barrier_timeout: float


def create_sale(r: redis.Redis, params: SaleParams, *, buyers: int, extra: dict[str, Any]) -> None:
    """Create the sale's keys: counter = stock, empty ledger, meta."""
    k = SaleKeys(params.sale_id)
    meta = {
        "stock": params.stock,
        "buyers": buyers,
        "mode": params.mode,
        "window": params.window,
        "party": params.party,
        "lock_timeout": params.lock_timeout,
        "barrier_timeout": params.barrier_timeout,
        "created": time.time(),
        **extra,
    }
    pipe = r.pipeline(transaction=True)
    pipe.delete(*k.all())
    pipe.hset(k.meta, mapping={key: json.dumps(value) for key, value in meta.items()})
    pipe.set(k.counter, params.stock)
    pipe.sadd(SALES_SET, params.sale_id)
    pipe.execute()


def load_meta(r: redis.Redis, sale_id: str) -> dict[str, Any]:
    """The sale's meta hash (JSON values decoded); NotFound for an unknown sale id."""
    raw: dict[bytes, bytes] = r.hgetall(SaleKeys(sale_id).meta)  # type: ignore[assignment]
    if not raw:
        raise NotFound(f"no ticket sale {sale_id!r} in this Redis")
    return {key.decode(): json.loads(value) for key, value in raw.items()}


def set_meta(r: redis.Redis, sale_id: str, **fields: Any) -> None:
    r.hset(SaleKeys(sale_id).meta, mapping={key: json.dumps(value) for key, value in fields.items()})


def params_of(meta: dict[str, Any], sale_id: str) -> SaleParams:
    return SaleParams(
        sale_id=sale_id,
        stock=int(meta["stock"]),
        mode=str(meta["mode"]),
        window=float(meta["window"]),
        party=int(meta["party"]),
        lock_timeout=float(meta["lock_timeout"]),
        barrier_timeout=float(meta["barrier_timeout"]),
    )


def sale_params(r: redis.Redis, sale_id: str) -> SaleParams:
    """Cached per process: a batch of K buyers reads the meta once."""
    cached = _params_cache.get(sale_id)
    if cached is None:
        cached = _params_cache[sale_id] = params_of(load_meta(r, sale_id), sale_id)
    return cached


def reset_sale(r: redis.Redis, sale_id: str) -> dict[str, Any]:
    """Put the stock back, empty the ledger and the barrier; the sale id and its parameters stay."""
    meta = load_meta(r, sale_id)
    k = SaleKeys(sale_id)
    pipe = r.pipeline(transaction=True)
    pipe.delete(k.ledger, k.failures, k.jobs, *k.coordination())
    pipe.set(k.counter, int(meta["stock"]))
    pipe.hdel(k.meta, "submitted", "barrier_timed_out", "go_time")
    pipe.hset(k.meta, "reset", json.dumps(time.time()))
    pipe.execute()
    return meta


def delete_sale(r: redis.Redis, sale_id: str) -> None:
    """Remove every key of the sale; NotFound if it does not exist."""
    load_meta(r, sale_id)
    pipe = r.pipeline(transaction=True)
    pipe.delete(*SaleKeys(sale_id).all())
    pipe.srem(SALES_SET, sale_id)
    pipe.execute()


def list_sales(r: redis.Redis) -> list[str]:
    return sorted(member.decode() for member in r.smembers(SALES_SET))  # type: ignore[union-attr]


def rows(r: redis.Redis, sale_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(sales, failures) from the ledger lists."""
    k = SaleKeys(sale_id)
    pipe = r.pipeline(transaction=False)
    pipe.lrange(k.ledger, 0, -1)
    pipe.lrange(k.failures, 0, -1)
    sales, failures = pipe.execute()
    return [json.loads(x) for x in sales], [json.loads(x) for x in failures]


def counter(r: redis.Redis, sale_id: str) -> int | None:
    value = r.get(SaleKeys(sale_id).counter)
    return None if value is None else int(value)


def progress(r: redis.Redis, sale_id: str) -> tuple[int, int]:
    """(sold, refused) so far."""
    k = SaleKeys(sale_id)
    pipe = r.pipeline(transaction=False)
    pipe.llen(k.ledger)
    pipe.llen(k.failures)
    sold, refused = pipe.execute()
    return int(sold), int(refused)


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


def buy(r: redis.Redis, sale_id: str, buyer: str, *, host_lock: Any = None, align: Any = None) -> dict[str, Any]:
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
        sale_id, buyer, p.mode, node=registry.node_name() or "local", host=_HOST, pid=os.getpid(), now=0.0
    )
    k = SaleKeys(sale_id)
    if p.mode == "naive":
        seat, info = _get_window_set(r, k, p, row)
    elif p.mode == "host-lock":
        if host_lock is None:
            raise Unsupported("host-lock mode needs an mplab worker node (no host lock in this process)")
        with host_lock:
            seat, info = _get_window_set(r, k, p, row)
    elif p.mode == "redis-lock":
        seat, info = _redis_lock(r, k, p, row)
    elif p.mode == "atomic":
        seat, info = _lua(r, k, p, row)
    elif p.mode == "watch":
        seat, info = _watch(r, k, p, row)
    else:
        raise Unsupported(f"unknown ticket mode {p.mode!r}")
    outcome = {**row, **info, "released": released, "ok": seat is not None, "time": time.time()}
    if seat is None:
        r.rpush(k.failures, json.dumps(outcome, sort_keys=True))
    else:
        outcome["seat"] = seat
    return outcome


def _sold_row(row: dict[str, Any], seat: int, info: dict[str, Any]) -> str:
    return json.dumps({**row, **info, "seat": seat, "time": time.time()}, sort_keys=True)


def _get_window_set(
    r: redis.Redis, k: SaleKeys, p: SaleParams, row: dict[str, Any]
) -> tuple[int | None, dict[str, Any]]:
    """The chapter's bug over the network: GET, race window, SET (the SET and the ledger row in one MULTI)."""
    count = int(r.get(k.counter) or 0)
    info: dict[str, Any] = {"read": count}
    if count <= 0:
        return None, {**info, "reason": "sold out"}
    time.sleep(p.window)
    seat = tickets.seat_for(p.stock, count)
    pipe = r.pipeline(transaction=True)
    pipe.set(k.counter, count - 1)
    pipe.rpush(k.ledger, _sold_row(row, seat, info))
    pipe.execute()
    return seat, info


def _redis_lock(r: redis.Redis, k: SaleKeys, p: SaleParams, row: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """GET/window/SET under redis-py's Lock; the write is fenced: it commits only while we still own the lock.

    If the holder dies, the lock key expires after `lock_timeout` seconds and the next buyer gets it; a
    holder that merely stalls past the timeout finds its token gone and sells nothing (reason
    'lock expired') instead of overwriting the counter behind the new holder's back.
    """
    lock = r.lock(k.lock, timeout=p.lock_timeout, sleep=LOCK_SLEEP, blocking_timeout=None)
    waited = time.perf_counter()
    lock.acquire()
    info: dict[str, Any] = {"lock_wait_s": round(time.perf_counter() - waited, 6)}
    token = lock.local.token
    try:
        pipe = r.pipeline(transaction=False)  # who holds the lock (what `mplab tickets report` and tests see)
        holder = {"pid": row["pid"], "node": row["node"], "buyer": row["buyer"], "since": time.time()}
        pipe.set(k.key("holder"), json.dumps(holder), px=max(1, int(p.lock_timeout * 1000)))
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
            lock.release()
        except LockNotOwnedError:
            info["lock_lost"] = True


def _lua(r: redis.Redis, k: SaleKeys, p: SaleParams, row: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
    """Check, decrement and ledger append in one server-side step: there is no window to race in."""
    script = r.register_script(tickets.LUA_BUY)
    stamped = json.dumps({**row, "time": time.time()}, sort_keys=True)
    seat = int(script(keys=[k.counter, k.ledger], args=[p.stock, stamped]))
    return (seat, {}) if seat > 0 else (None, {"reason": "sold out"})


def _watch(r: redis.Redis, k: SaleKeys, p: SaleParams, row: dict[str, Any]) -> tuple[int | None, dict[str, Any]]:
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
                info = {"attempts": attempts, "read": count}
                pipe.multi()
                pipe.decr(k.counter)
                pipe.rpush(k.ledger, _sold_row(row, seat, info))
                pipe.execute()
                return seat, info
            except WatchError:
                continue


ATTEMPTS = {
    "naive": _get_window_set,
    "redis-lock": _redis_lock,
    "atomic": _lua,
    "watch": _watch,
}
"""One purchase attempt per mode (after the barrier, without the failure row): for the benchmark."""
