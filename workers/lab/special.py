"""Section 4: orphans (4.1), zombies (4.2) and daemonic children (4.3), observed with psutil."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import psutil

from workers.lab.base import (
    Lab,
    Verdict,
    describe_pid,
    experiment,
    kill_and_forget,
    os_parent,
    reaped,
    status_of,
    wait_gone,
    wait_status,
)

PR_SET_CHILD_SUBREAPER = 36


def _describe(pid: int) -> str:
    try:
        return f"pid {pid} ({psutil.Process(pid).name()})"
    except psutil.Error:
        return f"pid {pid}"


def _inner_method(method: str) -> str:
    # The orphan/zombie chains are about OS parentage, so the inner level uses fork where it exists (with
    # forkserver the grandchild's parent would be the intermediate's fork server, not the intermediate).
    return "fork" if "fork" in mp.get_all_start_methods() else method


def _ctx(method: str) -> Any:
    return mp.get_context(method)


# -- 4.1 orphan ------------------------------------------------------------------------------------------


def _orphan_grandchild(conn: Any, parent_pid: int, wait_s: float) -> None:
    start = time.perf_counter()
    while os.getppid() == parent_pid and time.perf_counter() - start < wait_s:
        time.sleep(0.001)
    conn.send(
        {
            "pid": os.getpid(),
            "old_ppid": parent_pid,
            "new_ppid": os.getppid(),
            "after_s": time.perf_counter() - start,
        }
    )
    conn.close()


def _orphan_parent(conn: Any, method: str, wait_s: float) -> None:
    grandchild = _ctx(method).Process(target=_orphan_grandchild, args=(conn, os.getpid(), wait_s))
    grandchild.start()
    conn.send({"parent": os.getpid(), "grandchild": grandchild.pid})
    os._exit(0)  # the chapter's "主进程强制退出": no atexit, no join of the child


def _set_subreaper(on: bool) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)) == 0


def _subreaper_case(conn: Any, method: str, wait_s: float) -> None:
    """Runs in a child: become a subreaper, orphan a grandchild, reap it ourselves, report."""
    if not _set_subreaper(True):
        conn.send({"error": "prctl(PR_SET_CHILD_SUBREAPER) not available"})
        return
    reader, writer = _ctx(method).Pipe(duplex=False)
    parent = _ctx(method).Process(target=_orphan_parent, args=(writer, method, wait_s))
    parent.start()
    first = reader.recv()
    parent.join()
    report = reader.recv() if reader.poll(wait_s + 5) else {}
    status = None
    if report:
        _, status = os.waitpid(report["pid"], 0)  # it is our child now: we can reap it
    conn.send({"me": os.getpid(), **first, **report, "reaped_status": status})


@experiment(
    "orphan",
    "4.1",
    "a child whose parent dies is re-parented: to PID 1, or to the nearest subreaper; who reaps it",
    params={"wait_s": 5.0},
    limits={"wait_s": (0.5, 60)},
    param_help={"wait_s": "seconds to wait for re-parenting and for the adopter to reap"},
)
def orphan(lab: Lab) -> None:
    rep, method = lab.report, _inner_method(lab.method)
    wait_s = float(lab.p("wait_s"))
    reader, writer = lab.ctx().Pipe(duplex=False)
    parent = lab.ctx().Process(target=_orphan_parent, args=(writer, method, wait_s), name="orphan-parent")
    with reaped(parent):
        parent.start()
        first = reader.recv()
        rep.event(f"parent {first['parent']} started grandchild {first['grandchild']}, then os._exit(0)")
        parent.join()
        rep.event(f"parent {first['parent']} exited with code {parent.exitcode}")
        if not reader.poll(wait_s + 5):
            kill_and_forget(first["grandchild"])
            raise TimeoutError("the orphan never reported")
        seen = reader.recv()
    gpid, new_ppid = seen["pid"], seen["new_ppid"]
    adopter = _describe(new_ppid)
    rep.event(f"orphan {gpid}: ppid {seen['old_ppid']} -> {new_ppid} {adopter} after {seen['after_s'] * 1000:.1f} ms")
    zombie_for = _watch_reaping(gpid, wait_s)
    gone = status_of(gpid) == "gone"
    if not gone:
        kill_and_forget(gpid)
    rep.event(
        f"orphan exited; it was a zombie for {zombie_for * 1000:.0f} ms until {adopter} reaped it"
        if gone
        else f"orphan still {status_of(gpid)!r} after {wait_s} s: its adopter does not reap it"
    )
    rep.measure("orphan", {**seen, "adopter": adopter, "zombie_s": round(zombie_for, 3), "reaped": gone})
    pid1 = _describe(1)
    rep.claim(
        "the orphan keeps running after its parent dies",
        "holds" if seen["new_ppid"] != seen["old_ppid"] else "wrong",
        f"grandchild {gpid} reported after parent {first['parent']} had exited",
    )
    verdict: Verdict
    if new_ppid == 1:
        verdict, why = "holds", f"adopted by PID 1, here {pid1}"
    else:
        verdict = "outdated" if new_ppid != seen["old_ppid"] else "wrong"
        why = f"adopted by {adopter}, a subreaper (Linux >= 3.4 re-parents to the nearest one; PID 1 is {pid1})"
    rep.claim("an orphan is adopted by init (PID 1)", verdict, why)
    rep.claim(
        "the adopter reaps the orphan's exit status, so orphans are harmless",
        "holds" if gone else "wrong",
        f"{adopter} reaped it {zombie_for * 1000:.0f} ms after it exited (it was a zombie meanwhile)"
        if gone
        else f"still a zombie after {wait_s} s",
    )
    _orphan_subreaper(lab, method, wait_s)


def _watch_reaping(pid: int, timeout: float) -> float:
    """Seconds `pid` spends as a zombie before it is gone (waits at most `timeout`)."""
    status, _ = wait_status(pid, {"zombie", "gone"}, timeout)
    if status != "zombie":
        return 0.0
    _, waited = wait_gone(pid, timeout)
    return waited


def _orphan_subreaper(lab: Lab, method: str, wait_s: float) -> None:
    rep = lab.report
    if not sys.platform.startswith("linux"):
        rep.claim(
            "with a subreaper, orphans go to it instead of PID 1",
            "not-measured",
            "subreapers are Linux-only",
            "4.1.2",
        )
        return
    reader, writer = lab.ctx().Pipe(duplex=False)
    reaper = lab.ctx().Process(target=_subreaper_case, args=(writer, method, wait_s), name="subreaper")
    with reaped(reaper):
        reaper.start()
        got = reader.recv() if reader.poll(wait_s + 10) else {"error": "no report"}
    if "error" in got:
        rep.claim("with a subreaper, orphans go to it instead of PID 1", "not-measured", got["error"], "4.1.2")
        return
    rep.event(
        f"subreaper {got['me']} (prctl PR_SET_CHILD_SUBREAPER): its child {got['parent']} exits; orphan "
        f"{got['pid']} re-parented to {got['new_ppid']}; the subreaper reaped it with waitpid (status "
        f"{got['reaped_status']})"
    )
    rep.measure("subreaper_case", got)
    rep.claim(
        "on modern Linux an orphan may not go to PID 1 (the chapter's note on systemd sessions)",
        "holds" if got["new_ppid"] == got["me"] else "wrong",
        f"with process {got['me']} marked as a subreaper, its orphaned grandchild {got['pid']} got ppid "
        f"{got['new_ppid']} (not 1) and was reaped by it",
        "4.1.2",
    )


# -- 4.2 zombie ------------------------------------------------------------------------------------------


def _quick() -> None:
    pass


def _sleeper(seconds: float) -> None:
    time.sleep(seconds)


def _zombie_maker(conn: Any) -> None:
    """Fork a child that exits at once, never wait for it, report its pid once it is a zombie, then die."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    wait_status(pid, {"zombie"}, 5)
    conn.send({"zombie": pid, "status": status_of(pid), "parent": os.getpid()})
    os._exit(0)


@contextlib.contextmanager
def managed_processes(join_timeout: float = 5.0) -> Iterator[list[Any]]:
    """The chapter's cleanup helper, completed: join, then terminate, then kill; never leaves a zombie."""
    processes: list[Any] = []
    try:
        yield processes
    finally:
        deadline = time.monotonic() + join_timeout
        for proc in processes:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in processes:
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=1)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _rss_of_zombie(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/status") as fh:
            lines = [line for line in fh if line.startswith(("VmRSS", "VmSize"))]
        return "no VmRSS/VmSize lines (no memory left)" if not lines else "; ".join(x.strip() for x in lines)
    except OSError:
        return "no /proc"


@experiment(
    "zombie",
    "4.2",
    "a finished child not yet waited for is a zombie; join() reaps it; a managed helper leaves none",
    params={"join_timeout": 0.3},
    limits={"join_timeout": (0, 10)},
    param_help={"join_timeout": "seconds the managed helper waits before terminating stragglers"},
)
def zombie(lab: Lab) -> None:
    rep = lab.report
    ctx = lab.ctx(lab.parentage_method)
    rep.event(lab.parentage_note())
    rep.measure("parentage_start_method", lab.parentage_method)
    child = ctx.Process(target=_quick, name="zombie")
    later = ctx.Process(target=_quick, name="later")
    with reaped(child, later):
        child.start()
        parent = os_parent(child.pid)
        st, waited = wait_status(child.pid, {"zombie"}, 5)
        rep.event(
            f"child {child.pid} (OS parent {describe_pid(parent)}) finished, parent did not join: psutil says "
            f"{st!r} ({waited * 1000:.0f} ms)"
        )
        memory = _rss_of_zombie(child.pid)
        rep.event(f"/proc/{child.pid}/status of the zombie: {memory}")
        child.join()
        after = status_of(child.pid)
        rep.event(f"join() -> exitcode {child.exitcode}, psutil says {after!r}")
        # multiprocessing also reaps finished children whenever another Process starts
        child2 = ctx.Process(target=_quick, name="zombie-2")
        with reaped(child2):
            child2.start()
            st2, _ = wait_status(child2.pid, {"zombie"}, 5)
            later.start()
            implicit = status_of(child2.pid)
        rep.event(f"child {child2.pid} was {st2!r}; after starting another Process it is {implicit!r}")
    rep.measure("child_os_parent", parent)
    rep.measure("status_before_join", st)
    rep.measure("status_after_join", after)
    rep.measure("zombie_memory", memory)
    rep.measure("implicitly_reaped_by_start", implicit == "gone")
    mine = parent == os.getpid()
    if not mine:
        why = (
            f"the child's OS parent was {describe_pid(parent)}, not this process {os.getpid()} "
            f"({lab.parentage_method!r} start method): only the parent can leave a zombie or reap it"
        )
        for claim, section in (
            ("a child that ended but was not waited for is a zombie (ps: Z/<defunct>)", "4.2"),
            ("a zombie holds no memory, only its process-table entry", "4.2.1"),
            ("join() (wait) removes the zombie", "4.2.3"),
        ):
            rep.claim(claim, "not-measured", why, section)
    else:
        rep.claim(
            "a child that ended but was not waited for is a zombie (ps: Z/<defunct>)",
            "holds" if st == "zombie" else "wrong",
            f"psutil saw {st!r} for pid {child.pid} before join() ({lab.parentage_method} child)",
            "4.2",
        )
        rep.claim(
            "a zombie holds no memory, only its process-table entry",
            "holds" if st == "zombie" and "no VmRSS" in memory else "wrong" if st == "zombie" else "not-measured",
            memory if st == "zombie" else f"no zombie to look at (status {st!r})",
            "4.2.1",
        )
        rep.claim(
            "join() (wait) removes the zombie",
            "holds" if st == "zombie" and after == "gone" else "wrong",
            f"before join(): {st!r}, after join(): {after!r}; note multiprocessing also reaps finished children "
            f"at every Process.start() and active_children() (observed: {st2!r} -> {implicit!r}), so only the "
            f"last children linger",
            "4.2.3",
        )
    _zombie_orphaned(lab)
    _managed(lab)


def _zombie_orphaned(lab: Lab) -> None:
    rep = lab.report
    if not hasattr(os, "fork"):
        rep.claim("when the parent dies, init reaps its zombies", "not-measured", "needs os.fork", "4.2")
        return
    reader, writer = lab.ctx().Pipe(duplex=False)
    maker = lab.ctx().Process(target=_zombie_maker, args=(writer,), name="zombie-maker")
    with reaped(maker):
        maker.start()
        got = reader.recv() if reader.poll(10) else {}
    if not got:
        rep.claim(
            "when the parent dies, init reaps its zombies",
            "not-measured",
            "the zombie maker did not report",
            "4.2",
        )
        return
    pid = got["zombie"]
    gone, waited = wait_gone(pid, 10)
    if not gone:
        kill_and_forget(pid)
    rep.event(
        f"zombie {pid} ({got['status']!r}) lost its parent {got['parent']}: "
        + (f"gone {waited * 1000:.0f} ms later (reaped by its adopter)" if gone else "still there after 10 s")
    )
    rep.measure("orphaned_zombie_reaped_after_s", round(waited, 3) if gone else None)
    rep.claim(
        "when the parent dies, init reaps its zombies",
        "holds" if gone else "wrong",
        f"zombie {pid} disappeared {waited * 1000:.0f} ms after its parent exited (adopter: {_describe(1)} "
        f"or a subreaper)"
        if gone
        else "the zombie was still there 10 s after its parent died",
        "4.2",
    )


def _managed(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx(lab.parentage_method)
    timeout = float(lab.p("join_timeout"))
    start = time.perf_counter()
    pids = []
    with managed_processes(timeout) as procs:
        for i, seconds in enumerate((0.01, 0.05, 30.0)):
            proc = ctx.Process(target=_sleeper, args=(seconds,), name=f"Task-{i + 1}")
            proc.start()
            procs.append(proc)
            pids.append(proc.pid)
        parent = os_parent(pids[-1])  # the hanging one is still alive here
    took = time.perf_counter() - start
    codes = [p.exitcode for p in procs]
    left = [pid for pid in pids if status_of(pid) != "gone"]
    rep.event(
        f"managed_processes(): 3 workers (one hangs 30 s) -> exit codes {codes} in {took * 1000:.0f} ms; left: {left}"
    )
    rep.measure("managed_exitcodes", codes)
    rep.measure("managed_leftovers", left)
    claim = "a managed-cleanup context manager leaves no zombie (join, then terminate)"
    if parent != os.getpid():
        rep.claim(
            claim,
            "not-measured",
            f"the workers' OS parent was {describe_pid(parent)}, not this process: it, not the helper, reaped them",
            "4.2.3",
        )
        return
    rep.claim(
        claim,
        "holds" if not left else "wrong",
        f"exit codes {codes} (-{int(signal.SIGTERM)} = terminated after {timeout} s); {len(left)} process(es) "
        f"left ({lab.parentage_method} children)",
        "4.2.3",
    )
