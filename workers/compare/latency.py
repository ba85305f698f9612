"""`mplab compare --rtt 0,1,10`: the RQ modes again with Redis one network away, one pass per round-trip time.

This kernel has no `tc netem`, so the network is `workers.netproxy.LatencyProxy`: a TCP proxy in its own
process that holds every chunk for RTT/2 in each direction. The run starts, behind it, nodes of its own
(same count and slots as the main run's) and two stock SimpleWorkers, and talks to them through it too,
as a remote client would. For each RTT it measures, in interleaved rounds against the serial child: RQ
one job per task over the CPU sizes (the crossover with the main run's Pool), trivial jobs (per-job
overhead, throughput, against the two stock SimpleWorkers), and the K sweep (the K that hides the
overhead at that RTT). Separately, `workers.netcost` counts Redis commands and sequential round trips
per job for the node and for a stock SimpleWorker, single-task and batch jobs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from multiprocessing.pool import Pool

import redis

from workers import netcost, procs
from workers.compare import local, remote, report, rounds
from workers.compare.isolation import Footprint
from workers.compare.plan import CPU, TRIVIAL, Plan
from workers.compare.records import LatencyPoint, Row, Spread, WireCost
from workers.compare.rounds import Mode, Step
from workers.netproxy import LatencyProxy

WIRE_JOBS = 200
"""Trivial jobs per worker kind for the commands / round trips count (the count is exact, not timed)."""

WIRE_BATCH = 10
"""Tasks per batch job in the commands / round trips count of batch jobs."""


def scaled(count: int, rtt_ms: float, floor: int = 20) -> int:
    """Fewer one-job-per-task jobs at high RTT (each costs several RTTs), never fewer than `floor`."""
    return max(floor, min(count, int(count / (1 + rtt_ms / 2))))


def wire_costs(url: str, slots: int) -> list[WireCost]:
    """Commands and sequential round trips per job: mplab node vs stock SimpleWorker, single and batch."""
    out = []
    for batch in (1, WIRE_BATCH):
        for kind, label in (("mplab", "mplab node"), ("stock", "stock SimpleWorker")):
            jobs = WIRE_JOBS if batch == 1 else WIRE_JOBS // WIRE_BATCH
            cost = netcost.job_cost(url, kind, jobs=jobs, batch=batch, workers=slots)  # type: ignore[arg-type]
            out.append(WireCost(label, batch, round(cost.commands_per_job, 2), round(cost.round_trips_per_job, 2)))
    return out


class LatencyRun:
    """Nodes and stock workers behind one proxy; `point(rtt)` measures the RQ modes at that RTT."""

    def __init__(
        self,
        url: str,
        plan: Plan,
        serial: local.SerialChild,
        pool: Pool,
        cores: int,
        nodes: int,
        node_pool: int,
        start_method: str,
        footprint: Footprint,
        step: Step,
        closers: list[Callable[[bool], None]],
    ) -> None:
        self.plan, self.serial, self.pool, self.cores, self.step = plan, serial, pool, cores, step
        record = footprint.record
        self.proxy = LatencyProxy.for_url(url).__enter__()
        closers.append(lambda fast: self.proxy.close())
        proxied = self.proxy.url(url)
        self.client = redis.Redis.from_url(proxied)
        closers.append(lambda fast: self.client.close())
        queue = footprint.add_queue(record.queue("-rtt"))
        stock_queue = footprint.add_queue(record.queue("-rtt-stock-simple"))
        self.stock = remote.StockWorkers(self.client, proxied, {"simple": stock_queue})
        started: list[object] = []
        closers.append(lambda fast: procs.stop(started, grace=0.5 if fast else 10.0, twice=fast))  # type: ignore[arg-type]
        self.stock.spawn()
        started += self.stock.procs
        names = [f"compare-{record.run_id}-rtt-{i + 1}" for i in range(nodes)]
        self.nodes = remote.LocalNodes(proxied, queue, names, node_pool, start_method)
        self.nodes.__enter__()
        started += self.nodes.procs
        closers.append(lambda fast: self.nodes.logs.cleanup())
        self.stock.wait_registered()
        procs.wait_quiet(self.stock.pids(), timeout=5)
        slots = nodes * node_pool
        self.target = remote.RqTarget(self.client, queue, slots, min(slots, cores), footprint.add_jobs)

    def _rq(self, name: str, task: str, items: list[list[int]], batch: int) -> Mode:
        return Mode(name, partial(remote.rq_jobs, self.target, task, items, batch), self.target.cores_used)

    def point(self, rtt_ms: float, pool_rows: list[Row]) -> LatencyPoint:
        """Every RQ measurement at `rtt_ms`; `pool_rows` are the main run's Pool rows (RTT does not touch them)."""
        self.proxy.set_rtt(rtt_ms)
        step = self.step
        label = f"+{rtt_ms:g} ms"
        rows: list[Row] = []
        for size, count in self.plan.sizes:
            items = [[size]] * count
            modes = [self._rq("rq per-task", CPU, items, 1)]
            rows += rounds.measure_size("cpu", size, partial(self.serial.run, CPU, items), modes, self.plan.rounds,
                                        lambda s: step(f"{label} {s}"))  # fmt: skip
        n = self.plan.trivial
        jobs = scaled(n.rq, rtt_ms)
        items = [[i] for i in range(max(jobs, n.rq_batched))]
        slots, two = self.target.slots, 2
        trivial = [
            self._rq("rq per-task", TRIVIAL, items[:jobs], 1),
            self._rq("rq batched", TRIVIAL, items[: n.rq_batched], math.ceil(n.rq_batched / slots)),
            Mode("stock SimpleWorkers", partial(self.stock.drain, "simple", scaled(n.stock_simple, rtt_ms)), two),
        ]
        rows += rounds.measure_size("trivial", 0, partial(self.serial.run, TRIVIAL, items), trivial,
                                    self.plan.rounds, lambda s: step(f"{label} {s}"))  # fmt: skip
        size, ks, count = self.plan.k_sweep
        sweep_items = [[size]] * count
        pool_auto = Mode(
            "pool auto", partial(local.pool_map, self.pool, CPU, sweep_items, self.cores, None), self.cores
        )
        sweep = [pool_auto, *(self._rq(f"rq batched K={k}", CPU, sweep_items, k) for k in ks)]
        rows += rounds.measure_size("k-sweep", size, partial(self.serial.run, CPU, sweep_items), sweep,
                                    self.plan.rounds, lambda s: step(f"{label} {s}"))  # fmt: skip
        return summarize(rtt_ms, rows, pool_rows)


def summarize(rtt_ms: float, rows: list[Row], pool_rows: list[Row]) -> LatencyPoint:
    """The per-RTT findings: per-job overhead, throughput, against stock, crossover and K."""
    ours = next(r for r in rows if r.workload == "trivial" and r.mode == "rq per-task")
    stock = next((r for r in rows if r.workload == "trivial" and r.mode == "stock SimpleWorkers"), None)
    vs_stock = None
    if ours.rq is not None and stock is not None and stock.rq is not None:
        vs_stock = report.paired_ratio(ours.rq.drain_jobs_per_s, stock.rq.drain_jobs_per_s)
    return LatencyPoint(
        rtt_ms=rtt_ms,
        rows=rows,
        overhead_ms_per_job=round(ours.overhead_ms_per_task, 3),
        jobs_per_s=ours.rq.drain_jobs_per_s if ours.rq is not None else Spread.of([0.0]),
        vs_stock_simple=vs_stock,
        crossover=report.crossover([*pool_rows, *(r for r in rows if r.workload == "cpu")]),
        batch_k=report.batch_k([r for r in rows if r.workload == "k-sweep"]),
    )
