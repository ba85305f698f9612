"""Section 4.2: zombies: what psutil sees before and after join(), who reaps orphaned zombies, and the
chapter's managed_processes() cleanup helper."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

from workers.lab.base import (
    Lab,
    describe_pid,
    experiment,
    kill_and_forget,
    os_parent,
    status_of,
    wait_gone,
    wait_status,
)
from workers.lab.special import _describe
from workers.proclife import reaped

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
    """The chapter's 4.2.3 helper, same behaviour: at exit, join each live process for `join_timeout`
    seconds, and terminate() and join() the ones still alive (no kill: a child that ignores SIGTERM would
    make the final join() wait for ever)."""
    processes: list[Any] = []
    try:
        yield processes
    finally:
        for process in processes:
            if process.is_alive():
                process.join(timeout=join_timeout)
                if process.is_alive():
                    process.terminate()
                    process.join()


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
    params={"join_timeout": 2.0, "task_s": 0.2},
    limits={"join_timeout": (0.05, 10), "task_s": (0, 5)},
    param_help={
        "join_timeout": "seconds managed_processes() joins each worker before terminate() (chapter: 5)",
        "task_s": "seconds each worker sleeps (chapter: 2)",
    },
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
        if st != "zombie" or memory == "no /proc":
            why = f"no zombie to look at (status {st!r})" if st != "zombie" else f"{sys.platform} has no /proc"
            rep.claim("a zombie holds no memory, only its process-table entry", "not-measured", why, "4.2.1")
        else:
            rep.claim(
                "a zombie holds no memory, only its process-table entry",
                "holds" if "no VmRSS" in memory else "wrong",
                f"/proc/{child.pid}/status of the zombie has {memory}",
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


HANG_TIMEOUT_S = 0.5
"""join timeout of the edge case with a hanging worker (short: the helper waits this long for it)."""


def _managed_case(lab: Lab, durations: tuple[float, ...], timeout: float) -> dict[str, Any]:
    """Workers sleeping `durations` inside the chapter's helper; exit codes, time taken, what was left."""
    ctx = lab.ctx(lab.parentage_method)
    start = time.perf_counter()
    pids: list[int] = []
    with managed_processes(timeout) as procs:
        for i, seconds in enumerate(durations):
            proc = ctx.Process(target=_sleeper, args=(seconds,), name=f"Task-{i + 1}")
            proc.start()
            procs.append(proc)
            pids.append(proc.pid)
        parent = os_parent(pids[-1])
    took = time.perf_counter() - start
    codes = [p.exitcode for p in procs]
    left = [pid for pid in pids if status_of(pid) != "gone"]
    lab.report.event(
        f"managed_processes({timeout}) with workers of {list(durations)} s -> exit codes {codes} in "
        f"{took * 1000:.0f} ms; left: {left or 'nothing'}"
    )
    return {"codes": codes, "left": left, "parent": parent, "took_s": round(took, 3)}


def _managed(lab: Lab) -> None:
    rep = lab.report
    task_s, timeout = float(lab.p("task_s")), float(lab.p("join_timeout"))
    chapter = _managed_case(lab, (task_s,) * 3, timeout)
    rep.measure("managed_chapter_setup", chapter)
    claim = "managed_processes() cleans up every process: no zombie is left (the chapter's setup)"
    if chapter["parent"] != os.getpid():
        why = f"the workers' OS parent was {describe_pid(chapter['parent'])}, not this process: it reaped them"
        rep.claim(claim, "not-measured", why, "4.2.3")
        return
    clean = not chapter["left"] and all(code == 0 for code in chapter["codes"])
    rep.claim(
        claim,
        "holds" if clean else "wrong",
        f"3 workers of {task_s} s (the chapter's 2 s scaled down) with join(timeout={timeout}): all ended normally "
        f"(exit codes {chapter['codes']}) and nothing was left"
        if clean
        else f"exit codes {chapter['codes']}; left {chapter['left']}",
        "4.2.3",
    )
    hung = _managed_case(lab, (task_s, task_s, 30.0), HANG_TIMEOUT_S)
    rep.measure("managed_hanging_worker", hung)
    cut = hung["codes"][-1] == -signal.SIGTERM and not hung["left"]
    rep.edge(
        "a worker that outlives the timeout is terminated and reaped by managed_processes()",
        "holds" if cut else "wrong",
        f"a worker sleeping 30 s was terminated after {HANG_TIMEOUT_S} s (exitcode {hung['codes'][-1]}, i.e. "
        "SIGTERM) and reaped; nothing left. A worker that ignored SIGTERM would hang the helper's final "
        "join(): it has no kill() fallback"
        if cut
        else f"exit codes {hung['codes']}; left {hung['left']}",
        "4.2.3",
    )
