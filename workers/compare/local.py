"""In-host modes of `mplab compare`: serial (in a clean child), a Process per task, a warm Pool, subprocess.

Every mode runs in processes of its own, the serial reference included: the measuring process draws no
progress while a mode runs and computes nothing itself, so no mode shares a core with a render thread.
"""

from __future__ import annotations

import contextlib
import functools
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.pool import Pool
from typing import Any

from tasks import catalog
from workers import proclife
from workers.compare.records import RqTiming
from workers.pool import stop_pool


@dataclass
class Run:
    """One mode on one workload, once: wall time, the values computed (to check), processes used."""

    wall_s: float
    values: list[Any]
    workers: int
    cpu_share: float = 1.0  # serial only: CPU seconds / wall seconds of the child that ran it
    rq: RqTiming | None = None  # RQ modes only (drain_jobs_per_s holds this run's one sample)


def task_fn(task: str) -> Callable[..., Any]:
    """The task as a picklable callable returning just its value."""
    return functools.partial(catalog.call_raw, task)


def _serial_loop(conn: Connection, parent_end: Connection | None) -> None:
    proclife.quiet_child()
    if parent_end is not None:
        parent_end.close()  # our copy of the parent's end (fork): without it, the parent's exit is no EOF
    while True:
        try:
            task, items = conn.recv()
        except EOFError:
            return
        fn = catalog.TASKS.raw(task)
        c0, t0 = time.process_time(), time.perf_counter()
        values = [fn(*args) for args in items]
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        conn.send((wall, cpu, values))


class SerialChild:
    """A warm child process that runs tasks one after another and times them itself: the reference."""

    def __init__(self, ctx: BaseContext) -> None:
        self.conn, theirs = ctx.Pipe()
        self.proc = ctx.Process(target=_serial_loop, args=(theirs, self.conn), name="mplab-serial")  # type: ignore[attr-defined]
        with proclife.signals_blocked():
            self.proc.start()
        theirs.close()

    def run(self, task: str, items: list[list[Any]]) -> Run:
        self.conn.send((task, items))
        wall, cpu, values = self.conn.recv()
        return Run(wall, values, 1, cpu_share=cpu / wall if wall > 0 else 1.0)

    def close(self, fast: bool = False) -> None:
        """Closing our end ends its loop; interrupted (it may be mid-run), it is killed at once."""
        self.conn.close()
        self.proc.join(timeout=0 if fast else 5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _child(conn: Connection, task: str, args: list[Any]) -> None:
    proclife.quiet_child()
    conn.send(catalog.TASKS.raw(task)(*args))
    conn.close()


def process_per_task(ctx: BaseContext, task: str, items: list[list[Any]], workers: int) -> Run:
    """A fresh Process for every task (at most `workers` alive at once), result back over a Pipe."""
    t0 = time.perf_counter()
    values: list[Any] = [None] * len(items)
    running: list[tuple[int, Any, Connection]] = []
    next_item = 0
    try:
        while next_item < len(items) or running:
            while next_item < len(items) and len(running) < workers:
                ours, theirs = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(theirs, task, items[next_item]))  # type: ignore[attr-defined]
                with proclife.signals_blocked():
                    proc.start()
                theirs.close()
                running.append((next_item, proc, ours))
                next_item += 1
            index, proc, conn = running.pop(0)
            values[index] = conn.recv()
            conn.close()
            proc.join()
    finally:  # interrupted: the children still running are ours to stop
        for _, proc, conn in running:
            proc.kill()
            proc.join()
            conn.close()
    return Run(time.perf_counter() - t0, values, workers)


def pool_map(pool: Pool, task: str, items: list[list[Any]], workers: int, chunksize: int | None) -> Run:
    """Pool.starmap on a warm Pool (as the RQ nodes are warm; its start-up is measured on its own)."""
    fn = task_fn(task)
    t0 = time.perf_counter()
    values = pool.starmap(fn, items, chunksize=chunksize)
    return Run(time.perf_counter() - t0, values, workers)


@contextlib.contextmanager
def warm_pool(ctx: BaseContext, workers: int) -> Iterator[tuple[Pool, float]]:
    """A Pool and the seconds until all its processes answered one task each; always stopped in <= ~1 s."""
    t0 = time.perf_counter()
    with proclife.signals_blocked():  # the Pool's threads (which re-fork workers) keep them blocked too
        pool: Pool = ctx.Pool(workers, initializer=proclife.quiet_child)
    try:
        pool.map(abs, range(workers), chunksize=1)
        yield pool, time.perf_counter() - t0
    finally:
        stop_pool(pool)


SUBPROCESS_CODE = (
    "import json,sys;from tasks.catalog import call_raw;"
    "print(json.dumps(call_raw(sys.argv[1],*json.loads(sys.argv[2]))))"
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
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
                running.append((next_item, proc))
                next_item += 1
            index, proc = running[0]
            out, _ = proc.communicate(timeout=120)
            running.pop(0)
            if proc.returncode != 0:
                raise RuntimeError(f"subprocess for {task} exited {proc.returncode}")
            values[index] = json.loads(out)
    finally:
        for _, proc in running:
            proc.kill()
            proc.communicate()
    return Run(time.perf_counter() - t0, values, workers)
