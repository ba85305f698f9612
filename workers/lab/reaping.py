"""Section 4.2 measured further: many zombies in the process table (bounded), and reaping on SIGCHLD."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
from typing import Any

import psutil

from workers.lab.base import Lab, experiment, wait_status
from workers.proclife import reaped

# -- 4.2.1 many zombies ----------------------------------------------------------------------------------


def _zombie_farm(conn: Any, count: int, hold_s: float) -> None:
    """Fork `count` children that exit at once and never wait for them; report; then try the NPROC limit."""
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        wait_status(pid, {"zombie"}, 5)
    conn.send({"pids": pids})
    conn.send(_nproc_limit(pids))
    time.sleep(hold_s)  # the parent looks at the zombies meanwhile; they go when we exit


def _nproc_limit(zombies: list[int]) -> dict[str, Any]:
    """Lower RLIMIT_NPROC to the processes this user has now plus 3 and fork until refused (at most 20)."""
    if os.geteuid() == 0:
        return {"skipped": "running as root, which RLIMIT_NPROC does not limit"}
    mine = sum(1 for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == os.getuid())
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    soft = mine + 3
    if hard != resource.RLIM_INFINITY and soft > hard:
        return {"skipped": f"the hard limit {hard} is below what this user already runs"}
    resource.setrlimit(resource.RLIMIT_NPROC, (soft, hard))
    made, error = 0, ""
    for _ in range(20):
        try:
            pid = os.fork()
        except OSError as exc:
            error = f"{type(exc).__name__}: {exc}"
            break
        if pid == 0:
            os._exit(0)
        made += 1
    return {"limit": soft, "more_forks": made, "error": error, "zombies": len(zombies)}


@experiment(
    "many-zombies",
    "4.2.1",
    "a parent that never waits piles up zombies: each holds a PID; with a process limit, fork() is refused",
    params={"zombies": 100},
    limits={"zombies": (1, 500)},
    param_help={"zombies": "children that exit and are never waited for (bounded)"},
)
def many_zombies(lab: Lab) -> None:
    rep = lab.report
    count = int(lab.p("zombies"))
    ctx = lab.ctx(lab.parentage_method)
    reader, writer = ctx.Pipe(duplex=False)
    farm = ctx.Process(target=_zombie_farm, args=(writer, count, 30.0), name="zombie-farm")
    with reaped(farm, timeout=0):
        farm.start()
        pids = reader.recv()["pids"] if reader.poll(60) else []
        limit = reader.recv() if reader.poll(30) else {"skipped": "no report"}
        statuses = [_status(pid) for pid in pids]
        zombies = statuses.count("zombie")
        farm.kill()  # its zombies go to the adopter, which reaps them
    pid_max = _pid_max()
    rep.event(f"process {farm.pid} forked {count} children that exited at once; psutil sees {zombies} zombies")
    rep.event(f"process limit test: {limit}")
    rep.measure("zombies_seen", zombies)
    rep.measure("pid_max", pid_max)
    rep.measure("nproc_limit", limit)
    rep.claim(
        "zombies occupy process-table entries (PIDs)",
        "holds" if zombies == count else "wrong",
        f"all {count} finished, unwaited children were still in the process table as zombies, each holding its "
        f"PID (this system has {pid_max} PIDs in all)"
        if zombies == count
        else f"{zombies} of {count} unwaited children were zombies",
        "4.2.1",
    )
    claim = "many zombies can exhaust the process table, so that no new process can be created"
    if "skipped" in limit:
        rep.claim(claim, "not-measured", f"{limit['skipped']}; {zombies} zombies held {zombies} PIDs", "4.2.1")
    else:
        refused = bool(limit["error"])
        rep.claim(
            claim,
            "holds" if refused else "wrong",
            f"with RLIMIT_NPROC set to {limit['limit']} (this user's processes + 3) the zombie-holding parent could "
            f"fork {limit['more_forks']} more before fork() failed: {limit['error']} (zombies count until reaped)"
            if refused
            else f"with RLIMIT_NPROC at {limit['limit']} fork() was never refused ({limit['more_forks']} forks)",
            "4.2.1",
        )


def _status(pid: int) -> str:
    try:
        return str(psutil.Process(pid).status())
    except psutil.Error:
        return "gone"


def _pid_max() -> int | None:
    try:
        with open("/proc/sys/kernel/pid_max") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None


# -- 4.2 SIGCHLD -----------------------------------------------------------------------------------------


def _sigchld_parent(conn: Any, mode: str, children: int) -> None:
    """Fork children that exit; reap them in a SIGCHLD handler, or not at all, or let SIG_IGN do it."""
    calls = reaped_n = 0

    def on_chld(signum: int, frame: Any) -> None:
        nonlocal calls, reaped_n
        calls += 1
        while True:  # several exits can arrive as one signal: reap all that are ready
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            reaped_n += 1

    if mode == "handler":
        signal.signal(signal.SIGCHLD, on_chld)
    elif mode == "ignore":
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    pids = []
    for i in range(children):
        pid = os.fork()
        if pid == 0:
            time.sleep(0.01 * i)
            os._exit(0)
        pids.append(pid)
    if mode == "handler":
        deadline = time.monotonic() + 5
        while reaped_n < children and time.monotonic() < deadline:
            time.sleep(0.02)
    else:
        time.sleep(0.01 * children + 0.3)  # every child has exited by now
    left = sum(1 for pid in pids if _status(pid) == "zombie")
    conn.send({"mode": mode, "calls": calls, "reaped": reaped_n, "zombies_left": left, "children": children})
    os._exit(0)


@experiment(
    "sigchld",
    "4.2",
    "the OS sends SIGCHLD when a child ends: reaping in the handler leaves no zombie; SIG_IGN lets the kernel reap",
    params={"children": 5},
    limits={"children": (1, 100)},
    param_help={"children": "children each parent forks"},
)
def sigchld(lab: Lab) -> None:
    rep = lab.report
    if not hasattr(os, "fork") or not sys.platform.startswith("linux"):
        rep.claim("the OS sends SIGCHLD to the parent when a child ends", "not-measured", "needs Linux fork", "4.2")
        return
    ctx = lab.ctx(lab.parentage_method)
    got: dict[str, dict[str, Any]] = {}
    for mode in ("handler", "default", "ignore"):
        reader, writer = ctx.Pipe(duplex=False)
        parent = ctx.Process(target=_sigchld_parent, args=(writer, mode, int(lab.p("children"))))
        with reaped(parent, timeout=10):
            parent.start()
            got[mode] = reader.recv() if reader.poll(30) else {"mode": mode, "error": "no report"}
        rep.event(f"SIGCHLD {mode}: {got[mode]}")
    rep.measure("cases", got)
    h, d, ign = got["handler"], got["default"], got["ignore"]
    n = int(lab.p("children"))
    rep.claim(
        "the OS sends SIGCHLD to the parent when a child ends",
        "holds" if h.get("calls", 0) >= 1 and h.get("reaped") == n else "wrong",
        f"the parent's SIGCHLD handler ran {h.get('calls')} time(s) for {n} children and reaped {h.get('reaped')} "
        "(signals of children ending together merge, so the handler reaps in a loop)",
        "4.2",
    )
    rep.claim(
        "a parent that does not wait leaves zombies; reaping on SIGCHLD leaves none",
        "holds" if h.get("zombies_left") == 0 and d.get("zombies_left") == n else "wrong",
        f"default SIGCHLD, no wait: {d.get('zombies_left')} of {n} zombies; waitpid in the handler: "
        f"{h.get('zombies_left')} left",
        "4.2.3",
    )
    rep.edge(
        "with SIGCHLD set to SIG_IGN the kernel reaps children itself (no zombie, no exit status)",
        "holds" if ign.get("zombies_left") == 0 else "wrong",
        f"{ign.get('zombies_left')} zombies left of {n}; the parent can no longer wait() for their exit status",
        "4.2.3",
    )
