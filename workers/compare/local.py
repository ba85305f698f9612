"""In-host modes of `mplab compare`: serial, a Process per task, Pool (chunksize 1 / automatic), subprocess."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.pool import Pool
from typing import Any

from tasks import registry


@dataclass
class Run:
    """One mode on one workload: wall time, the values computed (to check), processes used."""

    wall_s: float
    values: list[Any]
    workers: int
    extra: dict[str, Any] = field(default_factory=dict)


def task_fn(task: str) -> Callable[..., Any]:
    """The task as a picklable callable returning just its value."""
    return functools.partial(registry.call_raw, task)


def median_run(runs: list[Run]) -> Run:
    """The run with the median wall time, recording all of them."""
    ordered = sorted(runs, key=lambda run: run.wall_s)
    chosen = ordered[len(ordered) // 2]
    if len(runs) > 1:
        chosen.extra["repeats"] = len(runs)
        chosen.extra["walls_s"] = [round(run.wall_s, 4) for run in ordered]
    return chosen


def serial(task: str, items: list[list[Any]]) -> Run:
    fn = task_fn(task)
    t0 = time.perf_counter()
    values = [fn(*args) for args in items]
    return Run(time.perf_counter() - t0, values, 1)


def quiet_child() -> None:
    """Children leave Ctrl-C to this command, which stops them in order."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _child(conn: Connection, task: str, args: list[Any]) -> None:
    quiet_child()
    conn.send(registry.raw(task)(*args))
    conn.close()


def process_per_task(ctx: BaseContext, task: str, items: list[list[Any]], workers: int) -> Run:
    """A fresh Process for every task (at most `workers` alive at once), result back over a Pipe."""
    t0 = time.perf_counter()
    values: list[Any] = [None] * len(items)
    running: list[tuple[int, Any, Connection]] = []
    next_item = 0
    while next_item < len(items) or running:
        while next_item < len(items) and len(running) < workers:
            ours, theirs = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_child, args=(theirs, task, items[next_item]))  # type: ignore[attr-defined]
            proc.start()
            theirs.close()
            running.append((next_item, proc, ours))
            next_item += 1
        index, proc, conn = running.pop(0)
        values[index] = conn.recv()
        conn.close()
        proc.join()
    return Run(time.perf_counter() - t0, values, workers)


def pool_map(pool: Pool, task: str, items: list[list[Any]], workers: int, chunksize: int | None) -> Run:
    """Pool.starmap on a warm Pool (as the RQ nodes are warm; its start-up is measured on its own)."""
    fn = task_fn(task)
    t0 = time.perf_counter()
    values = pool.starmap(fn, items, chunksize=chunksize)
    wall = time.perf_counter() - t0
    return Run(wall, values, workers, {"chunksize": chunksize or "auto"})


def start_pool(ctx: BaseContext, workers: int) -> tuple[Pool, float]:
    """A Pool and the seconds until all its processes answered one task each."""
    t0 = time.perf_counter()
    pool: Pool = ctx.Pool(workers, initializer=quiet_child)
    pool.map(abs, range(workers), chunksize=1)
    return pool, time.perf_counter() - t0


SUBPROCESS_CODE = (
    "import json,sys;from tasks import registry;print(json.dumps(registry.raw(sys.argv[1])(*json.loads(sys.argv[2]))))"
)


def subprocess_per_task(task: str, items: list[list[Any]], workers: int) -> Run:
    """`subprocess.Popen` of a fresh interpreter per task (at most `workers` at once), value on stdout."""
    t0 = time.perf_counter()
    values: list[Any] = [None] * len(items)
    running: list[tuple[int, subprocess.Popen[str]]] = []
    next_item = 0
    try:
        while next_item < len(items) or running:
            while next_item < len(items) and len(running) < workers:
                cmd = [sys.executable, "-c", SUBPROCESS_CODE, task, json.dumps(items[next_item])]
                running.append((next_item, subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)))
                next_item += 1
            index, proc = running.pop(0)
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"subprocess for {task} exited {proc.returncode}")
            values[index] = json.loads(out)
    finally:
        for _, proc in running:
            proc.kill()
            proc.wait()
    return Run(time.perf_counter() - t0, values, workers)
