"""Section 3: process identity (3.2) and the process states seen by psutil (3.3.1)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any

import psutil

from workers.errors import LabError
from workers.lab.base import Lab, describe_pid, experiment, os_parent, status_of, wait_status
from workers.proclife import reaped
from workers.settings import default_pool_size

# -- 3.2 identity ----------------------------------------------------------------------------------------


def _report_identity(queue: Any, index: int) -> None:
    queue.put({"index": index, "pid": os.getpid(), "ppid": os.getppid()})


@experiment(
    "identity",
    "3.2",
    "pid/ppid of the parent and its children (os.getpid, os.getppid)",
    params={"children": 3},
    limits={"children": (1, 64)},
    param_help={"children": "how many children to start"},
)
def identity(lab: Lab) -> None:
    rep = lab.report
    method = lab.parentage_method
    ctx = lab.ctx(method)
    me, my_parent = os.getpid(), os.getppid()
    rep.event(f"parent: pid {me}, its own parent (ppid) {my_parent} ({_name(my_parent)})")
    rep.event(lab.parentage_note())
    queue = ctx.Queue()
    procs = [ctx.Process(target=_report_identity, args=(queue, i), name=f"child-{i}") for i in range(lab.p("children"))]
    with reaped(*procs):
        for proc in procs:
            proc.start()
            rep.event(f"started {proc.name}: Process.pid = {proc.pid}")
        seen = sorted((queue.get(timeout=30) for _ in procs), key=lambda r: r["index"])
    for proc, row in zip(procs, seen, strict=True):
        rep.event(f"{proc.name} says: os.getpid() = {row['pid']}, os.getppid() = {row['ppid']}")
    rep.measure("parent", {"pid": me, "ppid": my_parent})
    rep.measure("start_method", method)
    rep.measure("children", seen)
    queue.close()
    queue.join_thread()
    if method != lab.method:
        _run_method_child(lab)
    pids = [r["pid"] for r in seen]
    unique = len(set(pids + [me])) == len(pids) + 1
    rep.claim(
        "every process has its own unique PID",
        "holds" if unique else "wrong",
        f"parent {me}, children {pids}: {'all distinct' if unique else 'duplicates!'}",
        "3.2.1",
    )
    ppids = sorted({r["ppid"] for r in seen})
    same_pids = pids == [p.pid for p in procs]
    if same_pids and ppids != [me]:
        others = ", ".join(describe_pid(p) for p in ppids if p != me)
        rep.claim(
            "a child sees its creator's PID via os.getppid(), and the parent sees the child's via Process.pid",
            "not-measured",
            f"the {method!r} children's OS parent was {others}, not their creator {me}: with this start method "
            f"another process forks them",
            "3.2.2",
        )
        return
    rep.claim(
        "a child sees its creator's PID via os.getppid(), and the parent sees the child's via Process.pid",
        "holds" if same_pids and ppids == [me] else "wrong",
        f"children's getppid() = {ppids}, parent pid {me}; Process.pid matched os.getpid() in the child: "
        f"{same_pids} ({method} children)",
        "3.2.2",
    )


def _run_method_child(lab: Lab) -> None:
    """One child with the run's own start method (forkserver): whose PID does its getppid() return?"""
    rep, ctx = lab.report, lab.ctx()
    queue = ctx.Queue()
    child = ctx.Process(target=_report_identity, args=(queue, -1), name="run-method-child")
    with reaped(child):
        child.start()
        row = queue.get(timeout=30)
    queue.close()
    queue.join_thread()
    rep.event(
        f"a {lab.method!r} child (pid {row['pid']}) says os.getppid() = {row['ppid']}: "
        f"{describe_pid(row['ppid']) if row['ppid'] != os.getpid() else 'this process'}"
    )
    rep.measure(
        "run_method_child",
        {
            "start_method": lab.method,
            "pid": row["pid"],
            "ppid": row["ppid"],
            "ppid_is_creator": row["ppid"] == os.getpid(),
        },
    )


def _name(pid: int) -> str:
    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return "?"


# -- 3.3.1 states ----------------------------------------------------------------------------------------


def _spin(seconds: float, queue: Any, name: str) -> None:
    start = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
    end = start + seconds
    cpu0 = time.process_time()
    while time.monotonic() < end:
        pass
    queue.put((name, time.process_time() - cpu0, start, time.monotonic()))


def _block(conn: Any, ready: Any) -> None:
    ready.send("ready")  # the parent starts watching only now, after our start-up
    ready.close()
    conn.recv()  # blocked until the parent writes


def _exit_now() -> None:
    pass


@experiment(
    "states",
    "3.3.1",
    "process states seen by psutil: running (ready or on CPU), sleeping (blocked), stopped, zombie",
    params={"spin_s": 0.6, "busy": 0},
    limits={"spin_s": (0.05, 10), "busy": (0, 64)},
    param_help={"spin_s": "seconds the CPU-bound children spin", "busy": "CPU-bound children (0: cores+1)"},
)
def states(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    cores = default_pool_size()
    busy_n = lab.p("busy") or cores + 1
    spin = float(lab.p("spin_s"))
    reader, writer = ctx.Pipe(duplex=False)
    ready_r, ready_w = ctx.Pipe(duplex=False)
    queue = ctx.Queue()
    busy = [ctx.Process(target=_spin, args=(spin, queue, f"busy-{i}"), name=f"busy-{i}") for i in range(busy_n)]
    blocked = ctx.Process(target=_block, args=(reader, ready_w), name="blocked")
    ender_method = lab.parentage_method
    ender = lab.ctx(ender_method).Process(target=_exit_now, name="ender")
    seen: dict[str, dict[str, int]] = {p.name: {} for p in [*busy, blocked]}
    with reaped(*busy, blocked, ender):
        blocked.start()
        ready_w.close()  # ours: if the child dies before "ready", poll() sees EOF instead of waiting
        if not ready_r.poll(60):
            raise LabError("the blocked child never said it was ready (60 s)")
        ready_r.recv()
        ready_r.close()
        asleep, _ = wait_status(blocked.pid, {"sleeping", "disk-sleep"}, 5)
        handles: dict[str, psutil.Process] = {"blocked": psutil.Process(blocked.pid)}
        blocked_cpu0 = _child_cpu(handles["blocked"])
        rep.event(f"child {blocked.pid} said 'ready' and called recv(): psutil says {asleep!r}")
        for proc in busy:
            proc.start()
        rep.event(f"started {busy_n} CPU-bound children on {cores} usable core(s) and 1 blocked on recv()")
        handles.update({p.name: psutil.Process(p.pid) for p in busy})
        t0 = time.perf_counter()
        while any(p.is_alive() for p in busy):
            for name, handle in handles.items():
                with contextlib.suppress(psutil.Error):
                    st = str(handle.status())
                    seen[name][st] = seen[name].get(st, 0) + 1
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        blocked_cpu = _child_cpu(handles["blocked"]) - blocked_cpu0
        shares, cpu_s = {}, 0.0
        starts: list[float] = []
        ends: list[float] = []
        for _ in busy:
            name, cpu, began, ended = queue.get(timeout=30)
            shares[name] = round(cpu / max(ended - began, 1e-9), 3)
            cpu_s += cpu
            starts.append(began)
            ends.append(ended)
        shares = dict(sorted(shares.items()))
        # all the CPU they got over the one window in which any of them spun (spawn children start one
        # after another: a sum of per-child shares, each over its own window, could exceed the cores)
        spin_window = max(ends) - min(starts)
        for proc in busy:
            proc.join()
        # stopped: SIGSTOP the blocked child for a moment
        os.kill(blocked.pid, signal.SIGSTOP)
        stopped, _ = wait_status(blocked.pid, {"stopped"}, 2)
        os.kill(blocked.pid, signal.SIGCONT)
        rep.event(f"SIGSTOP -> psutil says {stopped!r}; SIGCONT")
        writer.send("go")
        blocked.join()
        ender.start()
        ender_parent = os_parent(ender.pid)
        zombie, waited = wait_status(ender.pid, {"zombie"}, 5)
        rep.event(
            f"{ender_method} child {ender.pid} (OS parent {describe_pid(ender_parent)}) returned; not joined yet "
            f"-> psutil says {zombie!r} after {waited * 1000:.0f} ms"
        )
        ender.join()
        after = status_of(ender.pid)
        rep.event(f"after join(): {after!r}")
    for name, counts in seen.items():
        rep.event(f"{name}: statuses sampled every 20 ms: {counts}")
    total = cpu_s / max(spin_window, 1e-9)
    rep.measure("cores", cores)
    rep.measure("busy_children", busy_n)
    rep.measure("sampled_statuses", seen)
    rep.measure("cpu_share_per_busy_child", shares)
    rep.measure("cpu_share_total", round(total, 3))
    rep.measure("busy_cpu_s", round(cpu_s, 3))
    rep.measure("spin_window_s", round(spin_window, 3))
    rep.measure("blocked_child_cpu_s", round(blocked_cpu, 4))
    rep.measure("wall_s", round(wall, 3))
    rep.measure("stopped_status", stopped)
    rep.measure("zombie_status", zombie)

    blocked_ok = set(seen["blocked"]) <= {"sleeping"} and blocked_cpu < 0.05 * wall + 0.01
    rep.claim(
        "a process waiting for an event is Blocked and gets no CPU",
        "holds" if blocked_ok and seen["blocked"] else "wrong",
        f"the child blocked in recv() was {seen['blocked']} and used {blocked_cpu * 1000:.1f} ms CPU in "
        f"{wall:.2f} s (Linux calls Blocked 'sleeping', S; uninterruptible I/O waits are 'disk-sleep', D)",
    )
    waiting = busy_n > cores and max(shares.values()) < 0.9
    all_running = all(set(seen[p.name]) <= {"running"} for p in busy)
    rep.claim(
        "Ready is distinct from Running: a runnable process may wait for the CPU",
        "holds" if waiting else "not-measured",
        f"{busy_n} CPU-bound children on {cores} core(s) got CPU shares {list(shares.values())} (together "
        f"{total:.2f} of {cores} cores over the {spin_window:.2f} s they spun): each spent part of its time "
        f"Ready. Linux shows Ready and Running as one state: "
        f"psutil reported them {'all' if all_running else 'mostly'} 'running' (R)"
        + ("" if busy_n > cores else " (not oversubscribed: busy <= cores)"),
    )
    rep.measure("ender_start_method", ender_method)
    end_claim = "Running -> end: a process that finishes leaves the state diagram"
    if ender_parent != os.getpid():
        rep.claim(
            end_claim,
            "not-measured",
            f"the finished {ender_method!r} child's OS parent was {describe_pid(ender_parent)}, not this process: "
            f"whether it lingers as a zombie depends on that parent, not on us",
        )
    else:
        ended = zombie in ("zombie", "gone") and after == "gone"
        rep.claim(
            end_claim,
            "holds" if ended else "wrong",
            f"the {ender_method} child stopped running when its function returned (psutil: {zombie!r}, then "
            f"{after!r} once joined); the exit status it leaves for its parent is section 4.2's zombie"
            if ended
            else f"after returning, the child was still {zombie!r}, and {after!r} after join()",
            "3.3.1",
        )
    live = {st for counts in seen.values() for st in counts} | {stopped}
    beyond = sorted(live - {"running", "sleeping", "disk-sleep"})
    rep.edge(
        "Ready, Running and Blocked are every state a live process can be in",
        "wrong" if beyond else "holds",
        f"Linux also showed {beyond} (SIGSTOP gives 'stopped', T), a state the three-state model has no box for"
        if beyond
        else "only running/sleeping were seen (SIGSTOP did not show as 'stopped' here)",
        "3.3.1",
    )


def _child_cpu(handle: psutil.Process) -> float:
    try:
        t = handle.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0
