"""What `mplab compare` measures and how often: the plan (full or quick) and the user's options.

Rounds: the reference size the targets are judged on runs `target_rounds` (>= 3) interleaved rounds,
every other size `rounds` (>= 2). The full plan is sized for <= 60 s on 2 cores, quick for <= 20 s.
"""

from __future__ import annotations

import re
from dataclasses import astuple, dataclass, field

from workers.errors import ConfigError
from workers.netproxy import check_rtt

CPU = "tasks.cpu.sum_squares"
TRIVIAL = "tasks.cpu.trivial"
REFERENCE_SIZE = 2_000_000  # ~64 ms here: the chapter's task and BASELINES' 8 x 64 ms reference

MAX_NODES = 16
"""Most worker nodes `compare --nodes` starts (each is 2 + pool processes)."""

MAX_NODE_POOL = 8
"""Most slots (and Pool processes) per node `compare --node-pool` gives."""

MAX_RTTS = 5
"""Most round-trip times one `compare --rtt` run measures (each adds a pass over the RQ modes)."""

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
"""Queue and node names compare accepts: printable, no spaces or commas, <= 100 characters."""


@dataclass(frozen=True)
class Trivial:
    """How many trivial tasks each mode runs (pure overhead: the task itself costs next to nothing)."""

    local: int  # serial, Pool and the other in-host modes
    process: int  # one Process per task
    subprocess: int  # one interpreter per task
    rq: int  # one RQ job per task
    rq_batched: int  # tasks in batch jobs, one batch per slot
    stock_simple: int  # jobs for stock RQ SimpleWorkers
    stock_forking: int  # jobs for stock (forking) RQ workers

    @property
    def most(self) -> int:
        return max(int(n) for n in astuple(self))


@dataclass(frozen=True)
class Plan:
    """How much of each workload to run."""

    sizes: tuple[tuple[int, int], ...]  # (n, tasks)
    trivial: Trivial
    k_sweep: tuple[int, tuple[int, ...], int]  # (n, Ks, tasks)
    subprocess_tasks: int  # a fresh interpreter costs ~40 ms: more tasks would only measure that longer
    rounds: int = 2
    target_rounds: int = 3
    ipc_rounds: int = 1000
    enqueue_jobs: int = 2000
    sale: tuple[int, int, int] = (20, 40, 10)  # stock, buyers, buyers per job
    sale_rq_batched: bool = True

    @staticmethod
    def make(quick: bool) -> Plan:
        if quick:
            return Plan(
                sizes=((30_000, 32), (REFERENCE_SIZE, 8)),
                trivial=Trivial(
                    local=2000, process=24, subprocess=4, rq=150, rq_batched=20_000, stock_simple=150, stock_forking=30
                ),
                k_sweep=(30_000, (1, 16), 64),
                subprocess_tasks=4,
                ipc_rounds=300,
                enqueue_jobs=1000,
                sale=(10, 20, 10),
                sale_rq_batched=False,
            )
        return Plan(
            sizes=((3_000, 64), (30_000, 64), (300_000, 16), (REFERENCE_SIZE, 8), (4_000_000, 4)),
            trivial=Trivial(
                local=5000, process=64, subprocess=8, rq=300, rq_batched=50_000, stock_simple=300, stock_forking=60
            ),
            k_sweep=(30_000, (1, 4, 16, 64), 128),
            subprocess_tasks=8,
        )

    def rounds_for(self, size: int) -> int:
        return self.target_rounds if size == REFERENCE_SIZE else self.rounds


@dataclass(frozen=True)
class Options:
    """The user's choices, validated: one line and exit code 2 for anything out of range."""

    quick: bool = False
    nodes: int = 2
    node_pool: int = 1
    queue: str | None = None  # only with nodes == 0: the queue the running nodes serve
    node_names: tuple[str, ...] = field(default_factory=tuple)  # only with nodes == 0
    rtts: tuple[float, ...] = ()  # --rtt: added round-trip times (ms) for the latency pass; () = none

    def __post_init__(self) -> None:
        if len(self.rtts) > MAX_RTTS or len(set(self.rtts)) != len(self.rtts):
            raise ConfigError(f"--rtt takes 1-{MAX_RTTS} different values (ms), got {len(self.rtts)}")
        for rtt in self.rtts:
            check_rtt(rtt)
        if self.rtts and self.nodes == 0:
            raise ConfigError("--rtt starts nodes of its own behind the latency proxy: it needs --nodes >= 1")
        if not 0 <= self.nodes <= MAX_NODES:
            raise ConfigError(f"--nodes must be 0-{MAX_NODES} (0: use nodes already running), got {self.nodes}")
        if not 1 <= self.node_pool <= MAX_NODE_POOL:
            raise ConfigError(f"--node-pool must be 1-{MAX_NODE_POOL}, got {self.node_pool}")
        if self.nodes > 0 and (self.queue is not None or self.node_names):
            raise ConfigError(
                "--queue and --node-names need --nodes 0: the nodes compare starts serve a private queue of their own"
            )
        for name in ([self.queue] if self.queue is not None else []) + list(self.node_names):
            if not NAME.match(name):
                raise ConfigError(f"not a queue or node name: {name!r} (letters, digits, _.:- ; <= 100 characters)")
