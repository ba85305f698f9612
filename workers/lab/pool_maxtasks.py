"""Section 7.1, beyond `pool-reuse`: on the chapter's own setup (Pool(4), 8 tasks of uneven length), reuse
is the default, and maxtasksperchild=1 turns it off while the cap stays (pids, timestamps)."""

from __future__ import annotations

import os
import time
from typing import TypedDict

import psutil

from workers.lab.base import Lab, experiment

FRESH_WORKERS = "with maxtasksperchild=1 every task gets a new worker process, and the Pool still caps concurrency"


class PoolRun(TypedDict):
    """What one Pool.map over the tasks showed: who ran what, when, and how many ran at once."""

    processes: int
    tasks: int
    maxtasksperchild: int | None
    max_running: int
    worker_pids: list[int]
    tasks_per_pid: dict[str, int]
    workers_seen: list[int]
    seconds: float


def _task(item: tuple[int, float]) -> tuple[int, int, float, float]:
    """The chapter's cpu_intensive_task in shape: a little work, a sleep; (task, pid, start, end)."""
    task_id, seconds = item
    start = time.time()
    sum(i * i for i in range(20_000))
    time.sleep(seconds)
    return task_id, os.getpid(), start, time.time()


def max_running(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) spans open at the same instant (an end closes before a start opens)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def _helper(proc: psutil.Process) -> bool:
    """multiprocessing's fork server or resource tracker (not a Pool worker)."""
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return True
    return "forkserver" in cmd or "resource_tracker" in cmd


def _pool_run(lab: Lab, processes: int, tasks: int, task_s: float, maxtasks: int | None) -> PoolRun:
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    # durations vary like the chapter's random.uniform(0.5, 2.0), but the same every run
    items = [(i + 1, task_s * (0.5 + (i * 7 % 4) / 2)) for i in range(tasks)]
    start = time.perf_counter()
    with lab.ctx().Pool(processes=processes, maxtasksperchild=maxtasks) as pool:
        results = pool.map(_task, items)
        # the workers alive now that map() is done (under forkserver they are the fork server's children)
        started = sorted(p.pid for p in me.children(recursive=True) if p.pid not in before and not _helper(p))
        pool.close()
        pool.join()
    seconds = time.perf_counter() - start
    pids = [pid for _, pid, _, _ in results]
    per_pid: dict[str, int] = {}
    for pid in pids:
        per_pid[str(pid)] = per_pid.get(str(pid), 0) + 1
    for task_id, pid, t0, t1 in results:
        lab.report.event(f"Task-{task_id} on worker pid {pid}: {(t1 - t0) * 1000:.0f} ms", wall=t0)
    return {
        "processes": processes,
        "tasks": tasks,
        "maxtasksperchild": maxtasks,
        "max_running": max_running([(t0, t1) for _, _, t0, t1 in results]),
        "worker_pids": sorted(set(pids)),
        "tasks_per_pid": per_pid,
        "workers_seen": started,
        "seconds": round(seconds, 3),
    }


@experiment(
    "pool-maxtasks",
    "7.1",
    "the chapter's Pool(4) over 8 uneven tasks: which pids ran what, and the same with maxtasksperchild=1",
    params={"processes": 4, "tasks": 8, "task_ms": 150},
    limits={"processes": (1, 16), "tasks": (1, 64), "task_ms": (1, 2000)},
    param_help={
        "processes": "Pool size (chapter: 4)",
        "tasks": "tasks given to map() (chapter: 8)",
        "task_ms": "typical task length in ms; tasks take 0.5-2x this (chapter: 500-2000 ms at random)",
    },
)
def pool_maxtasks(lab: Lab) -> None:
    rep = lab.report
    n, tasks, task_s = int(lab.p("processes")), int(lab.p("tasks")), float(lab.p("task_ms")) / 1000
    rep.event(f"Pool(processes={n}).map over {tasks} tasks, start method {lab.method}")
    main = _pool_run(lab, n, tasks, task_s, None)
    rep.event(
        f"default: at most {main['max_running']} tasks ran at the same moment; {len(main['worker_pids'])} worker "
        f"pids ran them: {main['tasks_per_pid']}"
    )
    fresh = _pool_run(lab, n, tasks, task_s, 1)
    rep.event(
        f"maxtasksperchild=1: at most {fresh['max_running']} at once; {len(fresh['worker_pids'])} different pids "
        f"for {tasks} tasks"
    )
    rep.measure("pool", main)
    rep.measure("maxtasksperchild_1", fresh)
    distinct = len(fresh["worker_pids"])
    ok = distinct == tasks and fresh["max_running"] <= n
    rep.edge(
        FRESH_WORKERS,
        "holds" if ok else "wrong",
        f"{tasks} tasks ran on {distinct} different pids, at most {fresh['max_running']} at once (cap {n}); by "
        f"default the same {tasks} tasks ran on {len(main['worker_pids'])} pids {main['tasks_per_pid']}. Each "
        f"replacement worker costs a process start: {fresh['seconds']:.2f} s vs {main['seconds']:.2f} s"
        if ok
        else f"{tasks} tasks ran on {distinct} pids {fresh['tasks_per_pid']}, at most {fresh['max_running']} at once "
        f"with a cap of {n}",
    )
