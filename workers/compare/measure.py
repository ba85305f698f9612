"""Every workload of `mplab compare` in every mode, in interleaved rounds: CPU sizes, trivial tasks with
the stock RQ references, the K sweep, enqueue rate, IPC round trips (lab's harness) and the ticket sale."""

from __future__ import annotations

import math
import time
from functools import partial
from multiprocessing.context import BaseContext
from multiprocessing.pool import Pool
from typing import Any

from workers.compare import local, remote, report, rounds, tickets
from workers.compare.isolation import Footprint
from workers.compare.plan import CPU, REFERENCE_SIZE, TRIVIAL, Plan
from workers.compare.records import Header, IpcRow, Result, Row, SaleRow, Spread
from workers.compare.rounds import Mode
from workers.lab import ipc_bench

IPC_CHANNELS = (("pipe", "Pipe"), ("queue", "Queue"), ("redis", "Redis list over TCP"))


class Session:
    """The measuring side of one run: holds the warm Pool, the serial child and the RQ target."""

    def __init__(
        self,
        plan: Plan,
        ctx: BaseContext,
        pool: Pool,
        serial: local.SerialChild,
        target: remote.RqTarget,
        stock: remote.StockWorkers,
        url: str,
        cores: int,
        footprint: Footprint,
        progress: Any,
    ) -> None:
        self.plan, self.ctx, self.pool, self.serial, self.target, self.stock = plan, ctx, pool, serial, target, stock
        self.url, self.cores, self.footprint, self.progress = url, cores, footprint, progress
        self.marks: list[tuple[str, float]] = []
        self.shares: list[float] = []
        self.total = self._steps()

    def _steps(self) -> int:
        p = self.plan
        cpu = sum(p.rounds_for(size) * 7 for size, _ in p.sizes)
        return cpu + p.target_rounds * 9 + p.rounds * (2 + len(p.k_sweep[1])) + 3 + 5

    def step(self, label: str) -> None:
        self.footprint.touch()
        self.marks.append((label, time.perf_counter()))
        self.total = max(self.total, len(self.marks))
        self.progress(label, self.total)

    def run_all(self, header: Header) -> Result:
        rows: list[Row] = []
        for size, count in self.plan.sizes:
            rows += self.cpu(size, count)
        rows += self.trivial()
        rows += self.k_sweep()
        enqueue, rq_many, one_by_one = self.enqueue()
        ipc = self.ipc()
        sales = self.tickets()
        header.serial_cpu_share = round(min(self.shares, default=1.0), 3)
        ends = [t for _, t in self.marks[1:]] + [time.perf_counter()]
        steps = {label: round(end - t, 3) for (label, t), end in zip(self.marks, ends, strict=True)}
        return Result(
            header=header,
            rows=rows,
            reference_size=REFERENCE_SIZE,
            enqueue_jobs_per_s=enqueue,
            enqueue_one_by_one_jobs_per_s=one_by_one,
            enqueue_rq_many_jobs_per_s=rq_many,
            ipc=ipc,
            tickets=sales,
            crossover=report.crossover(rows),
            batch_k=report.batch_k(rows),
            targets=report.targets(rows, REFERENCE_SIZE, enqueue, header),
            step_seconds=steps,
        )

    def _local_modes(self, task: str, items: list[list[Any]], process_n: int, sub_n: int) -> list[Mode]:
        ctx, pool, cores = self.ctx, self.pool, self.cores
        return [
            Mode("process per task", partial(local.process_per_task, ctx, task, items[:process_n], cores), cores),
            Mode("pool chunksize=1", partial(local.pool_map, pool, task, items, cores, 1), cores),
            Mode("pool auto", partial(local.pool_map, pool, task, items, cores, None), cores),
            Mode("subprocess per task", partial(local.subprocess_per_task, task, items[:sub_n], cores), cores),
        ]

    def _rq(self, name: str, task: str, items: list[list[Any]], batch: int) -> Mode:
        return Mode(name, partial(remote.rq_jobs, self.target, task, items, batch), self.target.cores_used)

    def cpu(self, size: int, count: int) -> list[Row]:
        items = [[size]] * count
        modes = self._local_modes(CPU, items, count, self.plan.subprocess_tasks)
        modes += [
            self._rq("rq per-task", CPU, items, 1),
            self._rq("rq batched", CPU, items, math.ceil(count / self.target.slots)),
        ]
        serial = partial(self.serial.run, CPU, items)
        return rounds.measure_size("cpu", size, serial, modes, self.plan.rounds_for(size), self.step, self.shares)

    def trivial(self) -> list[Row]:
        n = self.plan.trivial
        items = [[i] for i in range(n.most)]
        stock = self.stock
        modes = self._local_modes(TRIVIAL, items[: n.local], n.process, n.subprocess)
        slots, two = self.target.slots, min(2, self.cores)
        modes += [
            self._rq("rq per-task", TRIVIAL, items[: n.rq], 1),
            self._rq("rq batched", TRIVIAL, items[: n.rq_batched], math.ceil(n.rq_batched / slots)),
            Mode("stock SimpleWorkers", partial(stock.drain, "simple", n.stock_simple), two),
            Mode("stock rq workers (forking)", partial(stock.drain, "forking", n.stock_forking), two),
        ]
        serial = partial(self.serial.run, TRIVIAL, items)
        return rounds.measure_size("trivial", 0, serial, modes, self.plan.target_rounds, self.step, self.shares)

    def k_sweep(self) -> list[Row]:
        size, ks, count = self.plan.k_sweep
        items = [[size]] * count
        pool = Mode("pool auto", partial(local.pool_map, self.pool, CPU, items, self.cores, None), self.cores)
        modes = [pool, *(self._rq(f"rq batched K={k}", CPU, items, k) for k in ks)]
        serial = partial(self.serial.run, CPU, items)
        return rounds.measure_size("k-sweep", size, serial, modes, self.plan.rounds, self.step, self.shares)

    def enqueue(self) -> tuple[Spread, Spread, Spread]:
        ours, many, single = [], [], []
        for r in range(self.plan.target_rounds):
            self.step(f"enqueue rate ({r + 1}/{self.plan.target_rounds})")
            queue = self.footprint.add_queue(self.footprint.record.queue(f"-enqueue-{r}"))
            a, b, c = remote.enqueue_rate(self.target.client, queue, self.plan.enqueue_jobs)
            ours.append(a)
            many.append(b)
            single.append(c)
        return Spread.of(ours), Spread.of(many), Spread.of(single)

    def ipc(self) -> list[IpcRow]:
        """100-byte round trips to an echo child, with lab's harness (the same one `lab run ipc-table` uses)."""
        self.step("IPC round trips")
        samples: dict[str, list[float]] = {kind: [] for kind, _ in IPC_CHANNELS}
        for _ in range(self.plan.rounds):
            for kind, _label in IPC_CHANNELS:
                n = self.plan.ipc_rounds if kind != "redis" else max(50, self.plan.ipc_rounds // 4)
                samples[kind].append(ipc_bench.measure(self.ctx, kind, 100, n, "echo", self.url) * 1e6)
        return [IpcRow(label, Spread.of(samples[kind])) for kind, label in IPC_CHANNELS]

    def tickets(self) -> list[SaleRow]:
        return tickets.measure(
            self.ctx,
            self.target.client,
            self.url,
            self.target.queue,
            self.plan.sale,
            self.plan.sale_rq_batched,
            self.footprint.add_sale,
            self.step,
        )
