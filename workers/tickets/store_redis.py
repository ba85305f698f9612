"""Redis store: one sale = a counter, a ledger and a few coordination keys under `mplab:sale:{id}:`.

    mplab:sales                  set of sale ids
    mplab:sale:{id}:meta         hash: stock, buyers, mode, window, party, timeouts, timestamps
    mplab:sale:{id}:counter      tickets left (what naive buyers GET and SET)
    mplab:sale:{id}:ledger       list of JSON rows, one per successful purchase (seat, buyer, node, pid, time)
    mplab:sale:{id}:failures     list of JSON rows, one per buyer who got no ticket (and why)
    mplab:sale:{id}:lock         the redis-py Lock of `redis-lock` mode
    mplab:sale:{id}:holder       who has that lock (pid, node, buyer, lock token): set after acquiring it,
                                 same TTL, deleted by its owner before releasing it
    mplab:sale:{id}:arrived/gate/go   the start barrier of networked buyers
    mplab:sale:{id}:jobs         list of the sale's RQ job ids

Buying (the modes, the start barrier) is in `workers.tickets.redis_buyer`.
"""

from __future__ import annotations

import json
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Unpack, cast

import redis

from tasks.tickets import Outcome
from workers.errors import NotFound
from workers.tickets.records import SaleMeta, SaleSpec

PREFIX = "mplab:sale:"
"""Key prefix of a sale's keys."""

SALES_SET = "mplab:sales"
"""Redis set of all sale ids."""

PARAMS_CACHE_SIZE = 256
"""Sales whose parameters a process keeps cached (a node process lives through many sales)."""

HOST = socket.gethostname()
"""This machine's name, in ledger rows."""
_params_cache: OrderedDict[str, SaleParams] = OrderedDict()


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


def params_for(sale_id: str, spec: SaleSpec, *, party: int, barrier_timeout: float) -> SaleParams:
    """The buyers' view of a sale about to be created from `spec`."""
    return SaleParams(sale_id, spec.stock, spec.mode, spec.window, party, spec.lock_timeout, barrier_timeout)


def create_sale(r: redis.Redis, params: SaleParams, *, buyers: int, extra: SaleMeta) -> None:
    """Create the sale's keys: counter = stock, empty ledger, meta."""
    k = SaleKeys(params.sale_id)
    meta: SaleMeta = {
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


def load_meta(r: redis.Redis, sale_id: str) -> SaleMeta:
    """The sale's meta hash (JSON values decoded); NotFound for an unknown sale id."""
    raw: dict[bytes, bytes] = r.hgetall(SaleKeys(sale_id).meta)  # type: ignore[assignment]
    if not raw:
        raise NotFound(f"no ticket sale {sale_id!r} in this Redis")
    return cast(SaleMeta, {key.decode(): json.loads(value) for key, value in raw.items()})


def set_meta(r: redis.Redis, sale_id: str, **fields: Unpack[SaleMeta]) -> None:
    r.hset(SaleKeys(sale_id).meta, mapping={key: json.dumps(value) for key, value in fields.items()})


def params_of(meta: SaleMeta, sale_id: str) -> SaleParams:
    return SaleParams(
        sale_id=sale_id,
        stock=int(meta["stock"]),
        mode=str(meta["mode"]),
        window=float(meta["window"]),
        party=int(meta["party"]),
        lock_timeout=float(meta["lock_timeout"]),
        barrier_timeout=float(meta["barrier_timeout"]),
    )


def cached_params(sale_id: str) -> SaleParams | None:
    """This process's cached parameters of a sale, if it has seen the sale."""
    return _params_cache.get(sale_id)


def sale_params(r: redis.Redis, sale_id: str) -> SaleParams:
    """Cached per process (the PARAMS_CACHE_SIZE most recent sales): a batch of K buyers reads the meta once."""
    cached = _params_cache.get(sale_id)
    if cached is None:
        cached = _params_cache[sale_id] = params_of(load_meta(r, sale_id), sale_id)
        while len(_params_cache) > PARAMS_CACHE_SIZE:
            _params_cache.popitem(last=False)
    else:
        _params_cache.move_to_end(sale_id)
    return cached


def reset_sale(r: redis.Redis, sale_id: str) -> SaleMeta:
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


def rows(r: redis.Redis, sale_id: str) -> tuple[list[Outcome], list[Outcome]]:
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
