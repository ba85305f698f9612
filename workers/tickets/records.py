"""The records a ticket sale crosses layers with: the spec it is asked to be (with its limits), what comes back.

`SaleSpec` is built once (by the CLI, the lab or `compare`) and handed down unchanged: the local runner,
the network submitter and the Redis store all read it. Every number has a finite range here, the one
place the CLI's `--help` ranges and the library's checks both come from.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import TypedDict

from tasks import tickets
from tasks.tickets import Outcome, Summary
from workers.errors import ConfigError
from workers.settings import MachineFacts

DEFAULT_LOCAL_WINDOW = 0.1
"""Seconds between a local buyer's read and its write (the chapter's processing time)."""

DEFAULT_NETWORK_WINDOW = 0.02
"""Seconds between a networked buyer's GET and its SET: long against a Redis round trip (~0.15 ms), short
enough that 200 buyers finish in seconds."""

DEFAULT_LOCK_TIMEOUT = 1.0
"""Seconds a redis-lock holder may keep the lock before Redis expires it (a dead holder's lock frees)."""

DEFAULT_WAIT_TIMEOUT = 300.0
"""Seconds `tickets submit --wait` follows a sale before giving up."""

STOCK_MAX = 1_000_000
"""Most tickets a sale puts on sale (the Redis counter and seat numbers stay small integers)."""

LOCAL_MAX_BUYERS = 1000
"""Most buyer processes a local sale starts. Every buyer is a whole process (and costs the parent two
pipe descriptors until it is joined): beyond a few hundred the sale measures the OS's fork and
scheduler rather than the race, and a few thousand run into the process's open-file limit."""

NETWORK_MAX_BUYERS = 100_000
"""Most buyers a networked sale enqueues (one job each, or one per `per_job`): a few MB of jobs in Redis."""

PER_JOB_MAX = 1000
"""Most buyers one networked job carries (they run on one node's Pool, each holding the race window)."""

WINDOW_MAX = 60.0
"""Longest race window, in seconds (one buyer holds it; a lock mode holds it once per buyer in turn)."""

LOCK_TIMEOUT_MAX = 3600.0
"""Longest redis-lock expiry, in seconds."""

WAIT_TIMEOUT_MAX = 86_400.0
"""Longest `--wait` of `tickets submit`, in seconds (a day)."""

BENCH_ATTEMPTS_MAX = 50_000
"""Most sequential attempts per mode and repetition of `tickets bench` (7 modes: ~minutes at 10k/s)."""

BENCH_REPEATS_MAX = 9
"""Most interleaved repetitions of `tickets bench`."""


def _in_range(name: str, value: float, low: float, high: float, unit: str = "") -> None:
    """ConfigError (exit 2) unless `low <= value <= high` and finite (NaN compares false to everything)."""
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"{name} must be between {_plain(low)} and {_plain(high)}{unit}, got {value}")


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class SaleSpec:
    """One ticket sale: which mode, how many tickets and buyers, how long each holds the race window.

    `per_job`, `party` and `queue` only matter to a networked sale (buyers as RQ jobs on worker nodes).
    """

    mode: str
    stock: int = 5
    buyers: int = 7
    window: float = DEFAULT_LOCAL_WINDOW
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    per_job: int = 1
    party: int = 0
    """Buyers the start barrier waits for; 0 = the slots of the live nodes serving `queue`."""
    queue: str = "default"

    def check(self, modes: tuple[str, ...], *, max_buyers: int) -> SaleSpec:
        """This spec if a sale in one of `modes` can run with it, else ConfigError (exit 2)."""
        try:
            tickets.check_mode(self.mode, modes)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        _in_range("stock", self.stock, 0, STOCK_MAX)
        _in_range("buyers", self.buyers, 1, max_buyers)
        _in_range("per-job", self.per_job, 1, PER_JOB_MAX)
        _in_range("party", self.party, 0, max_buyers)
        _in_range("window", self.window, 0, WINDOW_MAX, " seconds")
        _in_range("lock timeout", self.lock_timeout, 0.001, LOCK_TIMEOUT_MAX, " seconds")
        if self.mode == "redis-lock" and self.lock_timeout <= self.window:
            raise ConfigError(
                f"lock timeout ({self.lock_timeout} s) must exceed the race window ({self.window} s), or every "
                "redis-lock holder would lose its lock mid-purchase"
            )
        return self


def new_sale_id() -> str:
    """A fresh sale id, unique enough that concurrent sales never share keys or files."""
    return f"s{secrets.token_hex(5)}"


def check_wait_timeout(timeout: float) -> float:
    _in_range("timeout", timeout, 0.1, WAIT_TIMEOUT_MAX, " seconds")
    return timeout


def check_bench(attempts: int, repeats: int) -> None:
    _in_range("attempts", attempts, 1, BENCH_ATTEMPTS_MAX)
    _in_range("repeats", repeats, 1, BENCH_REPEATS_MAX)


class SaleMeta(TypedDict, total=False):
    """A sale's parameters and timestamps as stored (Redis meta hash, or a file sale's meta.json)."""

    stock: int
    buyers: int
    mode: str
    window: float
    party: int
    lock_timeout: float
    barrier_timeout: float
    created: float
    submitted: float
    go_time: float
    reset: float
    barrier_timed_out: bool
    store: str
    where: str
    path: str
    per_job: int
    queue: str
    jobs: int
    nodes_at_submit: dict[str, int]


class Throughput(TypedDict, total=False):
    """Rates of a sale, from its first submit (or creation) to its last ledger row."""

    elapsed_s: float
    purchases_per_s: float
    attempts_per_s: float
    after_go_s: float


class JobStates(TypedDict):
    """How a networked sale's RQ jobs stand: counts per status and the first failure's last line."""

    total: int
    by_status: dict[str, int]
    first_error: str | None


class SaleReport(TypedDict, total=False):
    """A sale's counted outcome: what `local`, `submit --wait` and `report` return (and print as JSON).

    A submitted sale also carries the receipt's fields (`jobs`, `party`, `nodes_at_submit`, ...).
    """

    sale_id: str
    store: str
    mode: str
    meta: SaleMeta
    summary: Summary
    outcomes: list[Outcome]
    throughput: Throughput
    job_states: JobStates
    path: str
    ledger: str
    window_s: float
    elapsed_s: float
    crashed_buyers: list[str]
    redis: str | None
    machine: MachineFacts
    # a submitted sale's receipt
    stock: int
    buyers: int
    per_job: int
    jobs: int
    queue: str
    party: int
    nodes_at_submit: dict[str, int]
    enqueue_s: float


class SaleChange(TypedDict, total=False):
    """What `reset` and `delete` did to a sale."""

    sale_id: str
    store: str
    reset: bool
    deleted: bool
    stock: int


class BenchResult(TypedDict, total=False):
    """`tickets bench`: attempts/s per mode (median of the repetitions) and ratios to the reference paths."""

    attempts: int
    repeats: int
    per_s: dict[str, float]
    runs_per_s: dict[str, list[float]]
    ratio_to_getset: dict[str, float]
    ratio_to_naive: dict[str, float]
    reference_per_s: dict[str, int]
    redis: str
    machine: MachineFacts
