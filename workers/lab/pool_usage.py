"""Section 7.1's promises measured: a Pool caps concurrency and reuses its processes; imap saves memory."""

from __future__ import annotations

import os
import time
import tracemalloc
from typing import Any

from workers.lab.base import Lab, experiment

# -- 7.1 concurrency cap and reuse -----------------------------------------------------------------------


def _stamp(seconds: float) -> tuple[int, float, float]:
    """Sleep; return (worker pid, start, end) in wall-clock time."""
    start = time.time()
    time.sleep(seconds)
    return os.getpid(), start, time.time()


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans running at the same instant."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@experiment(
    "pool-reuse",
    "7.1",
    "a Pool runs at most `processes` tasks at once and reuses the same worker processes for every task",
    params={"processes": 3, "tasks": 12, "task_ms": 50},
    limits={"processes": (1, 16), "tasks": (1, 500), "task_ms": (1, 1000)},
    param_help={"processes": "Pool size", "tasks": "tasks submitted at once", "task_ms": "milliseconds per task"},
)
def pool_reuse(lab: Lab) -> None:
    rep = lab.report
    size, tasks, task_s = int(lab.p("processes")), int(lab.p("tasks")), float(lab.p("task_ms")) / 1000
    with lab.ctx().Pool(processes=size) as pool:
        workers = sorted(p.pid for p in pool._pool)  # the Pool's own processes, to compare with who ran tasks
        submitted = time.perf_counter()
        done = pool.map(_stamp, [task_s] * tasks, chunksize=1)
    pids = sorted({pid for pid, _, _ in done})
    peak = _max_overlap([(s, e) for _, s, e in done])
    per_pid = {pid: sum(1 for p, _, _ in done if p == pid) for pid in pids}
    rep.event(
        f"Pool({size}) started workers {workers}; {tasks} tasks of {task_s * 1000:.0f} ms submitted at once",
        at=submitted,
    )
    rep.event(f"tasks ran in pids {per_pid} (tasks per worker); at most {peak} ran at the same time")
    rep.measure("pool_workers", workers)
    rep.measure("tasks_per_pid", per_pid)
    rep.measure("max_concurrent", peak)
    rep.claim(
        "a Pool limits how many processes run at once (限制同时运行进程数)",
        "holds" if peak <= size else "wrong",
        f"{tasks} tasks submitted at once, never more than {peak} running together with Pool({size})"
        if peak <= size
        else f"{peak} tasks ran together with Pool({size})",
        "7.1",
    )
    reused = set(pids) <= set(workers) and len(pids) < tasks
    rep.claim(
        "a Pool's processes are reused for many tasks (进程可重复使用)",
        "holds" if reused else "wrong",
        f"{tasks} tasks ran in only {len(pids)} processes, all of them the Pool's own workers {workers}"
        if reused
        else f"{tasks} tasks ran in {len(pids)} processes {pids}; the Pool's workers were {workers}",
        "7.1",
    )


# -- 7.1.2 imap and memory -------------------------------------------------------------------------------


def _payload(i: int, size: int) -> bytes:
    return i.to_bytes(8, "little") * (size // 8)


def _result_of(args: tuple[int, int]) -> bytes:
    return _payload(*args)


def _peak_bytes(lab: Lab, pool: Any, method: str, n: int, size: int) -> tuple[int, int]:
    """Peak Python memory traced in this process while `method` runs over n items; checksum of the results."""
    items = ((i, size) for i in range(n))  # a generator: the input is never a list of its own
    tracemalloc.start()
    try:
        total = 0
        if method == "map":
            for result in pool.map(_result_of, items, chunksize=64):
                total += result[0]
        else:
            for result in pool.imap(_result_of, items, chunksize=64):
                total += result[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, total


@experiment(
    "imap-memory",
    "7.1.2",
    "map() vs imap() over a large iterable: the parent's peak memory while results are consumed one by one",
    params={"items": 20000, "kib": 1},
    limits={"items": (1000, 200_000), "kib": (1, 16)},
    param_help={"items": "items in the iterable", "kib": "KiB of each result"},
)
def imap_memory(lab: Lab) -> None:
    rep = lab.report
    n, size = int(lab.p("items")), int(lab.p("kib")) * 1024
    with lab.ctx().Pool(processes=2) as pool:
        pool.map(abs, range(4))  # the workers are up before anything is traced
        peaks = {m: _peak_bytes(lab, pool, m, n, size) for m in ("map", "imap")}
    mib = {m: round(p / 2**20, 1) for m, (p, _) in peaks.items()}
    same = peaks["map"][1] == peaks["imap"][1]
    rep.event(f"{n} results of {lab.p('kib')} KiB: peak traced memory in the parent map {mib['map']} MiB, imap "
              f"{mib['imap']} MiB (same results: {same})")  # fmt: skip
    rep.measure("peak_mib", mib)
    rep.measure("results_mib", round(n * size / 2**20, 1))
    lower = same and peaks["imap"][0] < 0.5 * peaks["map"][0]
    rep.claim(
        "imap() computes and hands out results as it goes, lowering memory use on large data (降低内存占用)",
        "holds" if lower else "wrong",
        f"consuming {n} results one by one: imap peaked at {mib['imap']} MiB in the parent, map at {mib['map']} "
        f"MiB (map builds the whole input and result lists first: {n * size / 2**20:.1f} MiB of results)"
        if lower
        else f"peaks: imap {mib['imap']} MiB, map {mib['map']} MiB (same results: {same})",
        "7.1.2",
    )
