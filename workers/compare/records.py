"""The records `mplab compare` produces: a spread of samples, one row per mode and size, targets, the header.

Every figure taken over rounds is a `Spread` (median, min, max, the samples). Two spreads that overlap
cannot name a winner: `verdict()` says "too close to call" instead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Literal

from workers.settings import MachineFacts

Verdict = Literal["met", "not met", "too close to call", "invalid", "not measured"]

MET: Verdict = "met"
NOT_MET: Verdict = "not met"
CLOSE: Verdict = "too close to call"
INVALID: Verdict = "invalid"
NOT_MEASURED: Verdict = "not measured"


@dataclass(frozen=True)
class Spread:
    """Median and range of one figure over the rounds that measured it."""

    median: float
    low: float
    high: float
    samples: tuple[float, ...]

    @staticmethod
    def of(samples: list[float] | tuple[float, ...]) -> Spread:
        if not samples:
            raise ValueError("a spread needs at least one sample")
        values = tuple(float(s) for s in samples)
        return Spread(median(values), min(values), max(values), values)

    def scaled(self, factor: float) -> Spread:
        return Spread.of([s * factor for s in self.samples])

    def overlaps(self, other: Spread) -> bool:
        return self.low <= other.high and other.low <= self.high

    def against(self, goal: float, higher_is_better: bool = True) -> Verdict:
        """met if every round met the goal, not met if none did, else too close to call."""
        lo, hi = (self.low, self.high) if higher_is_better else (-self.high, -self.low)
        g = goal if higher_is_better else -goal
        if lo >= g:
            return MET
        if hi < g:
            return NOT_MET
        return CLOSE


@dataclass
class RqTiming:
    """Means per RQ job, from the jobs' own timestamps (median over rounds)."""

    jobs: int
    batch: int
    enqueue_ms: float | None
    queue_wait_ms: float
    running_ms: float
    result_fetch_ms: float | None
    drain_jobs_per_s: Spread


@dataclass
class Row:
    """One mode on one workload size, over its rounds."""

    workload: str  # cpu, trivial, k-sweep
    size: int  # n of sum(i*i for i in range(n)); 0 for trivial
    task_ms: float  # serial milliseconds per task (median)
    mode: str
    tasks: int
    workers: int
    cores_used: int  # the physical limit of this mode's speedup on this machine
    rounds: int
    wall_s: Spread
    speedup: Spread  # paired per round: serial time per task / this mode's time per task
    efficiency: Spread  # speedup / cores_used
    tasks_per_s: Spread
    overhead_ms_per_task: float  # worker time not spent on the task, per task (median)
    valid: bool = True
    invalid_reason: str = ""
    remeasured: bool = False
    rq: RqTiming | None = None


@dataclass
class Target:
    """One of the issues' benchmark targets, measured as a ratio in this run."""

    target: str
    value: Spread | None
    goal: float
    unit: str
    verdict: Verdict
    higher_is_better: bool = True
    note: str = ""


@dataclass
class Judged:
    """A per-size (or per-K) ratio and whether it reaches its threshold."""

    key: int  # size or K
    task_ms: float
    ratio: Spread
    verdict: Verdict


@dataclass
class Finding:
    """The crossover or the batch size K: the smallest key whose ratio reached the threshold."""

    threshold: float
    at: int | None  # first key reached
    task_ms: float | None
    close_before: int | None  # an earlier key where it was too close to call
    by_key: list[Judged] = field(default_factory=list)


@dataclass
class NodeSeen:
    """A worker node with a live heartbeat on the Redis compare used."""

    name: str
    host: str
    queues: str
    slots: int
    used: bool  # compare's RQ modes ran on it
    started_by_compare: bool


@dataclass
class Header:
    """What every run states about itself."""

    machine: MachineFacts
    redis_version: str
    redis: str
    quick: bool
    date: str
    run_id: str
    queue: str
    rq_slots: int
    nodes_started: int
    node_pool: int
    nodes: list[NodeSeen]
    load_start: float
    load_end: float = 0.0
    pool_startup_ms: float = 0.0
    serial_cpu_share: float = 1.0  # lowest share of a core the serial child got in any round
    node_idle_rss_mb: list[float] = field(default_factory=list)
    node_idle_pss_mb: list[float] = field(default_factory=list)
    cleaned_runs: list[str] = field(default_factory=list)
    foreign_jobs: int = 0
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0


@dataclass
class IpcRow:
    channel: str
    rtt_us: Spread


@dataclass
class SaleRow:
    mode: str
    where: str
    stock: int
    buyers: int
    sold: int
    oversold: int
    sold_twice: int
    purchases_per_s: float
    correct: bool


@dataclass
class WireCost:
    """Redis commands and sequential round trips per job of one worker kind (counted, not timed)."""

    worker: str
    batch: int  # tasks per job
    commands_per_job: float
    round_trips_per_job: float


@dataclass
class LatencyPoint:
    """The RQ modes at one added round-trip time (`--rtt`), Redis behind the latency proxy."""

    rtt_ms: float
    rows: list[Row]
    overhead_ms_per_job: float  # trivial RQ one job per task: worker time not spent on the task, per job
    jobs_per_s: Spread  # trivial RQ one job per task, drain rate from the jobs' timestamps
    vs_stock_simple: Spread | None  # that rate / two stock SimpleWorkers' (paired by round)
    crossover: Finding  # against the main run's Pool rows
    batch_k: Finding


@dataclass
class Result:
    """Everything one run measured; `to_json()` is what --json and -o write."""

    header: Header
    rows: list[Row]
    reference_size: int
    enqueue_jobs_per_s: Spread | None  # mplab's submit path: client.enqueue_many, one pipeline
    enqueue_one_by_one_jobs_per_s: Spread | None  # RQ's own enqueue, one job at a time
    ipc: list[IpcRow]
    tickets: list[SaleRow]
    crossover: Finding
    batch_k: Finding
    targets: list[Target]
    step_seconds: dict[str, float]
    enqueue_rq_many_jobs_per_s: Spread | None = None  # RQ's own enqueue_many, one pipeline (reference)
    latency: list[LatencyPoint] = field(default_factory=list)
    wire: list[WireCost] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The whole record as a JSON object (every dataclass an object, spreads included)."""
        return asdict(self)
