"""`mplab compare`: the same workloads serial, in-host (Process, Pool, subprocess) and through RQ nodes.

Every parallel mode's results are checked against serial; figures are derived in `report`, and the
header names Python, start method, cores, Redis version and where Redis runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from workers.compare import ipc, local, remote, report, tickets
from workers.compare.local import Run
from workers.errors import ConfigError, ResultMismatch
from workers.redis_server import connect
from workers.settings import Settings, default_pool_size, machine_facts

CPU = "tasks.cpu.sum_squares"
TRIVIAL = "tasks.cpu.trivial"
SAFE_SALE_MODES = ("redis-lock", "atomic", "watch")  # must never oversell, wherever the buyers run
REFERENCE_SIZE = 2_000_000  # ~64 ms here: the chapter's task and BASELINES' 8 x 64 ms reference


@dataclass(frozen=True)
class Plan:
    """How much of each workload to run; `quick` keeps a run under ~20 s on 2 cores."""

    sizes: tuple[tuple[int, int], ...]  # (n, tasks)
    trivial: dict[str, int] = field(default_factory=dict)  # mode -> tasks
    k_sweep: tuple[int, tuple[int, ...], int] = (30_000, (1, 4, 16, 64), 128)  # (n, Ks, tasks)
    ipc_rounds: int = 2000
    reference_repeats: int = 5  # the 8 x ~64 ms size the targets are judged on: median of 5 rounds
    trivial_repeats: int = 3  # RQ per-task vs stock SimpleWorkers, interleaved: median of 3
    tickets: bool = True

    @staticmethod
    def make(quick: bool) -> Plan:
        if quick:
            return Plan(
                sizes=((30_000, 32), (REFERENCE_SIZE, 8)),
                trivial={
                    "local": 2000,
                    "process": 64,
                    "subprocess": 8,
                    "rq": 300,
                    "rq_batched": 20_000,
                    "stock_forking": 60,
                },
                k_sweep=(30_000, (1, 16), 64),
                ipc_rounds=500,
                reference_repeats=1,
                trivial_repeats=1,
            )
        return Plan(
            sizes=((3_000, 64), (30_000, 64), (300_000, 32), (REFERENCE_SIZE, 8), (6_000_000, 4)),
            trivial={
                "local": 10_000,
                "process": 200,
                "subprocess": 24,
                "rq": 500,
                "rq_batched": 50_000,
                "stock_forking": 150,
            },
        )


@dataclass(frozen=True)
class Options:
    quick: bool = False
    nodes: int = field(default_factory=default_pool_size)
    node_pool: int = 1
    queue: str = "default"

    def __post_init__(self) -> None:
        if self.nodes < 0:
            raise ConfigError(f"--nodes must be >= 0, got {self.nodes}")
        if self.node_pool < 1:
            raise ConfigError(f"--node-pool must be >= 1, got {self.node_pool}")


Progress = Callable[[str, int], None]  # (what is running now, steps in total)


def steps(plan: Plan) -> int:
    per_size = 7  # serial, process, pool x2, subprocess, rq per-task, rq batched
    rounds = sum(plan.reference_repeats if size == REFERENCE_SIZE else 1 for size, _ in plan.sizes)
    sale = tickets.STEPS if plan.tickets else 0
    return rounds * per_size + 10 + 2 + len(plan.k_sweep[1]) + 2 + sale


@contextlib.contextmanager
def _nodes(settings: Settings, url: str, client: redis.Redis, opts: Options) -> Iterator[tuple[int, list[Any]]]:
    if opts.nodes == 0:
        slots = remote.existing_slots(client)
        if slots == 0:
            raise ConfigError("--nodes 0 needs running worker nodes, and none sent a heartbeat to this Redis")
        yield slots, []
        return
    with remote.LocalNodes(url, opts.queue, opts.nodes, opts.node_pool, settings.start_method) as started:
        time.sleep(2.5)  # a heartbeat taken while idle, after start-up
        yield opts.nodes * opts.node_pool, started.idle_memory()


def run(settings: Settings, url: str, where: str, opts: Options, progress: Progress) -> dict[str, Any]:
    """Run every workload in every mode; the result is JSON-able."""
    with connect(url) as client:
        return _run(settings, url, where, opts, progress, client)


def _run(
    settings: Settings, url: str, where: str, opts: Options, progress: Progress, client: redis.Redis
) -> dict[str, Any]:
    plan = Plan.make(opts.quick)
    total = steps(plan)
    ctx = settings.mp_context()
    cores = default_pool_size()
    header = {
        **machine_facts(settings.start_method),
        "redis_version": client.info("server")["redis_version"],
        "redis": where,
        "quick": opts.quick,
    }
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()

    marks: list[tuple[str, float]] = []

    def step(label: str) -> None:
        marks.append((label, time.perf_counter()))
        progress(label, total)

    def record(workload: str, size: int, mode: str, result: Run, serial_run: Run) -> None:
        report.check(mode, f"{workload} n={size}", result, serial_run.values)
        task_ms = serial_run.wall_s / max(1, len(serial_run.values)) * 1000
        rows.append(report.row(workload, size, task_ms, mode, result, serial_run.wall_s, cores))

    def measure(workload: str, size: int, mode: str, fn: Callable[[], Run], serial_run: Run) -> None:
        step(f"{workload} n={size}: {mode}")
        record(workload, size, mode, fn(), serial_run)

    pool, pool_startup = local.start_pool(ctx, cores)
    header["pool_startup_ms"] = round(pool_startup * 1000, 2)
    with pool, _nodes(settings, url, client, opts) as (slots, idle_rss):
        header["rq_slots"] = slots
        header["nodes_started"] = opts.nodes
        header["node_pool"] = opts.node_pool
        if idle_rss:
            header["node_idle_rss_mb"] = [round(r / 2**20, 1) for r, _ in idle_rss]
            header["node_idle_pss_mb"] = [round(p / 2**20, 1) for _, p in idle_rss]
        for size, count in plan.sizes:
            items = [[size]] * count
            reps = plan.reference_repeats if size == REFERENCE_SIZE else 1
            modes: list[tuple[str, Callable[[], Run]]] = [("serial", functools.partial(local.serial, CPU, items))]
            modes += _cpu_modes(ctx, pool, items, cores, client, opts.queue, slots)
            runs: dict[str, list[Run]] = {mode: [] for mode, _ in modes}
            for round_ in range(reps):  # rounds interleave the modes, so drift hits every mode alike
                for mode, fn in modes:
                    step(f"cpu n={size}: {mode}" + (f" (round {round_ + 1} of {reps})" if reps > 1 else ""))
                    runs[mode].append(fn())
            base = local.median_run(runs["serial"])
            rows.append(report.row("cpu", size, base.wall_s / count * 1000, "serial", base, base.wall_s, cores))
            for mode, _ in modes[1:]:
                record("cpu", size, mode, local.median_run(runs[mode]), base)
        _trivial(measure, ctx, pool, plan, cores, client, url, opts.queue, slots, step)
        n, ks, count = plan.k_sweep
        items = [[n]] * count
        step(f"k-sweep n={n}: serial")
        base = local.serial(CPU, items)
        rows.append(report.row("k-sweep", n, base.wall_s / count * 1000, "serial", base, base.wall_s, cores))
        measure("k-sweep", n, "pool auto", lambda: local.pool_map(pool, CPU, items, cores, None), base)
        for k in ks:
            rq_k = functools.partial(remote.rq_jobs, client, opts.queue, CPU, items, k, slots)
            measure("k-sweep", n, f"rq batched K={k}", rq_k, base)
        step("enqueue rate")
        enqueue = remote.enqueue_rate(client, f"mplab-enqueue-{time.time_ns()}", 2000)
        step("IPC round trips")
        ipc_rows = ipc.round_trips(ctx, url, plan.ipc_rounds)
        tickets = _tickets(settings, url, opts, step) if plan.tickets else None
    result: dict[str, Any] = {
        "header": header,
        "rows": rows,
        "reference_size": REFERENCE_SIZE,
        "enqueue": enqueue,
        "ipc": ipc_rows,
        "tickets": tickets,
    }
    result["crossover"] = report.crossover(rows)
    result["batch_k"] = report.batch_k(rows)
    result["targets"] = report.targets(result)
    header["duration_s"] = round(time.perf_counter() - started, 2)
    ends = [t for _, t in marks[1:]] + [time.perf_counter()]
    result["step_seconds"] = {label: round(end - t, 3) for (label, t), end in zip(marks, ends, strict=True)}
    return result


def _cpu_modes(ctx: Any, pool: Any, items: list[list[Any]], cores: int, client: redis.Redis, queue: str,
               slots: int) -> list[tuple[str, Callable[[], Run]]]:  # fmt: skip
    """Every parallel mode on the CPU task, as calls to make."""
    k = math.ceil(len(items) / slots)
    return [
        ("process per task", lambda: local.process_per_task(ctx, CPU, items, cores)),
        ("pool chunksize=1", lambda: local.pool_map(pool, CPU, items, cores, 1)),
        ("pool auto", lambda: local.pool_map(pool, CPU, items, cores, None)),
        ("subprocess per task", lambda: local.subprocess_per_task(CPU, items, cores)),
        ("rq per-task", lambda: remote.rq_jobs(client, queue, CPU, items, 1, slots)),
        ("rq batched", lambda: remote.rq_jobs(client, queue, CPU, items, k, slots)),
    ]


def _trivial(measure: Any, ctx: Any, pool: Any, plan: Plan, cores: int, client: redis.Redis, url: str, queue: str,
             slots: int, step: Callable[[str], None]) -> None:  # fmt: skip
    counts = plan.trivial

    def items(n: int) -> list[list[Any]]:
        return [[i] for i in range(n)]

    def base(n: int) -> Run:
        return local.serial(TRIVIAL, items(n))

    step("trivial: serial")
    ref = base(counts["local"])
    measure("trivial", 0, "serial", lambda: ref, ref)
    measure(
        "trivial",
        0,
        "pool chunksize=1",
        lambda: local.pool_map(pool, TRIVIAL, items(counts["local"]), cores, 1),
        ref,
    )
    measure(
        "trivial",
        0,
        "pool auto",
        lambda: local.pool_map(pool, TRIVIAL, items(counts["local"]), cores, None),
        ref,
    )
    n = counts["process"]
    measure(
        "trivial",
        0,
        "process per task",
        lambda: local.process_per_task(ctx, TRIVIAL, items(n), cores),
        base(n),
    )
    n = counts["subprocess"]
    measure(
        "trivial",
        0,
        "subprocess per task",
        lambda: local.subprocess_per_task(TRIVIAL, items(n), cores),
        base(n),
    )
    # mplab's node vs stock SimpleWorkers on the same trivial jobs, interleaved (ABAB...) so that drift
    # on a shared machine hits both alike; the median of each is reported
    n = counts["rq"]
    ours: list[Run] = []
    stock: list[Run] = []
    step("trivial: rq per-task and 2 stock SimpleWorkers, interleaved")
    for _ in range(plan.trivial_repeats):
        ours.append(remote.rq_jobs(client, queue, TRIVIAL, items(n), 1, slots))
        stock.append(remote.stock_reference(client, url, n, 2, "rq.worker.SimpleWorker"))
    measure("trivial", 0, "rq per-task", lambda: local.median_run(ours), base(n))
    n, k = counts["rq_batched"], math.ceil(counts["rq_batched"] / slots)
    measure("trivial", 0, "rq batched",
            lambda: remote.rq_jobs(client, queue, TRIVIAL, items(n), k, slots), base(n))  # fmt: skip
    n = counts["stock_forking"]
    measure("trivial", 0, "reference: 2 stock rq workers (forking)",
            lambda: remote.stock_reference(client, url, n, 2, None), base(n))  # fmt: skip
    n = counts["rq"]
    measure("trivial", 0, "reference: 2 stock SimpleWorkers", lambda: local.median_run(stock), base(n))


def _tickets(settings: Settings, url: str, opts: Options, step: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = tickets.measure(settings, url, opts.queue, opts.quick, step)
    wrong = [r for r in rows if r["mode"] in SAFE_SALE_MODES and not r["correct"]]
    if wrong:
        raise ResultMismatch(f"ticket sale: {wrong[0]['mode']} ({wrong[0]['where']}) oversold; it must never")
    return rows
