"""Section 4: orphans (4.1), zombies (4.2) and daemonic children (4.3), observed with psutil."""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import sys
import time
from typing import Any

import psutil

from workers.lab.base import Lab, Verdict, experiment, kill_and_forget, status_of, wait_gone, wait_status
from workers.proclife import reaped

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
    note = "on modern Linux an orphan may not go to PID 1 (the chapter's note on systemd desktop sessions)"
    if new_ppid == seen["old_ppid"]:
        rep.claim(note, "not-measured", "the orphan was never re-parented", "4.1.2")
    elif new_ppid != 1:
        rep.claim(note, "holds", f"with nothing set up by the lab, the orphan went to {adopter}, not PID 1", "4.1.2")
    else:
        rep.claim(
            note,
            "not-measured",
            f"here the orphan went to PID 1 ({pid1}): this session has no subreaper (no systemd user session, as "
            "in a container or over ssh), so the desktop case the note describes cannot be seen here",
            "4.1.2",
        )
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
    rep.edge(
        "a process marked as a subreaper (prctl PR_SET_CHILD_SUBREAPER) adopts its orphaned descendants",
        "holds" if got["new_ppid"] == got["me"] else "wrong",
        f"the lab made process {got['me']} a subreaper: its orphaned grandchild {got['pid']} got ppid "
        f"{got['new_ppid']} and was reaped by it (this is how systemd --user takes orphans on a desktop)"
        if got["new_ppid"] == got["me"]
        else f"with process {got['me']} marked as a subreaper, the orphan {got['pid']} still went to {got['new_ppid']}",
        "4.1.2",
    )
