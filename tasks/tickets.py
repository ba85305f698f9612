"""The chapter's ticket sale (6.5), pure: the buy decision, modes, seats, the Lua script, the summary.

Nothing here touches a file, Redis or a process; `workers.tickets` supplies the stores and the buyers. The
outcome of a sale is *counted* from its ledger (one row per successful purchase), never inferred from the
final counter: a lost update leaves the counter too high, and only the ledger shows the tickets sold twice.

Seats: a buyer who read `count` tickets left takes seat `stock - count + 1` (seat 1 is the first ticket
sold). Two buyers who read the same count take the same seat, so every lost update shows up in the
ledger as a seat sold twice.
"""

from __future__ import annotations

from collections import Counter
from typing import TypedDict

FILE_MODES: tuple[str, ...] = ("unsafe", "lock")
"""File store modes: the chapter's 6.5.1 (no lock) and 6.5.2 (multiprocessing.Lock)."""

REDIS_MODES: tuple[str, ...] = ("naive", "host-lock", "redis-lock", "atomic", "watch")
"""Redis store modes: GET/SET; per-node multiprocessing.Lock; redis-py Lock; Lua script; WATCH/MULTI."""

SAFE_MODES: frozenset[str] = frozenset({"lock", "redis-lock", "atomic", "watch"})
"""Modes that never oversell (host-lock is safe only while a single node takes part)."""

MODE_HELP: dict[str, str] = {
    "unsafe": "read ticket.json, race window, write it back (the chapter's 6.5.1)",
    "lock": "multiprocessing.Lock held across read-modify-write, re-reading inside (6.5.2)",
    "naive": "Redis GET, race window, SET: the chapter's bug over the network",
    "host-lock": "a multiprocessing.Lock per worker node: correct on one node, wrong across nodes",
    "redis-lock": "redis-py Lock with a timeout around GET/SET: one buyer at a time, cluster-wide",
    "atomic": "one Lua script checks and decrements on the server (no window to race in)",
    "watch": "optimistic WATCH/GET/MULTI/DECR/EXEC, retried when another buyer got in first",
}

CHAPTER_BUYERS: tuple[str, ...] = ("Alice", "Bob", "Charlie", "David", "Eve", "Frank", "Grace")
"""The chapter's seven buyers; more buyers are named buyer-8, buyer-9, ..."""

# KEYS[1] = counter, KEYS[2] = ledger list; ARGV[1] = the stock, ARGV[2] = the ledger row as a JSON object
# without its seat. The seat is spliced in here, so a sale and its ledger row are one atomic step.
LUA_BUY = """
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
if count <= 0 then
  return 0
end
redis.call('DECR', KEYS[1])
local seat = tonumber(ARGV[1]) - count + 1
redis.call('RPUSH', KEYS[2], '{"seat": ' .. seat .. ', ' .. string.sub(ARGV[2], 2))
return seat
"""
"""Check-and-decrement plus ledger append, executed atomically by Redis; returns the seat or 0 (sold out)."""


class Ticket(TypedDict):
    """The chapter's ticket.json: how many tickets are left."""

    count: int


class Outcome(TypedDict, total=False):
    """One ledger row (a sale: `seat`) or failure row (no ticket: `reason`) of a buyer."""

    sale: str
    buyer: str
    mode: str
    node: str
    host: str
    pid: int
    time: float
    seat: int
    read: int
    saw: int
    reason: str
    error: str
    released: str | None
    ok: bool
    attempts: int
    lock_wait_s: float
    lock_lost: bool
    counter_written: bool


class Summary(TypedDict):
    """Everything a sale's outcome is judged by, counted from its rows (see `summarize`)."""

    stock: int
    buyers: int
    sold: int
    expected_sold: int
    oversold: int
    seats_sold_twice: int
    extra_sales_on_taken_seats: int
    seats_sold_twice_detail: dict[str, int]
    distinct_seats: int
    final_counter: int | None
    lost_updates: int | None
    failed_buyers: int
    failure_reasons: dict[str, int]
    missing_buyers: int
    sold_per_node: dict[str, int]
    sold_per_pid: dict[str, int]
    first_sale: float | None
    last_sale: float | None
    correct: bool


def check_mode(mode: str, allowed: tuple[str, ...]) -> str:
    """`mode` if allowed, else ValueError naming the allowed ones."""
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(allowed)}")
    return mode


def buyer_names(count: int) -> list[str]:
    """The chapter's buyers first, then buyer-8, buyer-9, ... (unique names)."""
    return [CHAPTER_BUYERS[i] if i < len(CHAPTER_BUYERS) else f"buyer-{i + 1}" for i in range(count)]


def seat_for(stock: int, count_read: int) -> int:
    """Seat taken by a buyer who read `count_read` tickets left (1 = first ticket of the sale)."""
    return stock - count_read + 1


def decide(data: Ticket) -> Ticket | None:
    """The buy decision on the chapter's ticket.json: what to write back, or None when sold out."""
    count = data["count"]
    if count <= 0:
        return None
    return {**data, "count": count - 1}


def summarize(
    sales: list[Outcome],
    failures: list[Outcome],
    *,
    stock: int,
    buyers: int,
    final_counter: int | None,
) -> Summary:
    """Everything a sale's outcome is judged by, counted from its ledger rows and failure rows."""
    sold = len(sales)
    per_seat = Counter(int(row["seat"]) for row in sales)
    twice = {str(seat): n for seat, n in sorted(per_seat.items()) if n > 1}
    per_node = Counter(str(row.get("node") or row.get("host") or "?") for row in sales)
    per_pid = Counter(str(row.get("pid")) for row in sales)
    reasons = Counter(str(row.get("reason", "?")) for row in failures)
    expected = min(buyers, stock)
    lost_updates = None if final_counter is None else sold - (stock - final_counter)
    times = [float(row["time"]) for row in sales if "time" in row]
    return {
        "stock": stock,
        "buyers": buyers,
        "sold": sold,
        "expected_sold": expected,
        "oversold": max(0, sold - stock),
        "seats_sold_twice": len(twice),
        "extra_sales_on_taken_seats": sold - len(per_seat),
        "seats_sold_twice_detail": twice,
        "distinct_seats": len(per_seat),
        "final_counter": final_counter,
        "lost_updates": lost_updates,
        "failed_buyers": len(failures),
        "failure_reasons": dict(sorted(reasons.items())),
        "missing_buyers": max(0, buyers - sold - len(failures)),
        "sold_per_node": dict(sorted(per_node.items())),
        "sold_per_pid": dict(sorted(per_pid.items())),
        "first_sale": min(times) if times else None,
        "last_sale": max(times) if times else None,
        "correct": sold == expected and not twice and lost_updates in (0, None),
    }


def ledger_row(sale_id: str, buyer: str, mode: str, *, node: str, host: str, pid: int, now: float) -> Outcome:
    """A ledger (or failure) row without its seat: who bought, where, when."""
    return {
        "sale": sale_id,
        "buyer": buyer,
        "mode": mode,
        "node": node,
        "host": host,
        "pid": pid,
        "time": now,
    }
