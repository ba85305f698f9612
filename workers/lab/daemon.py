"""Section 4.3: daemonic children, observed: terminated at the parent's exit, no children of their own."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from typing import Any

from workers.lab.base import Lab, experiment, kill_and_forget, status_of
from workers.proclife import reaped


def _quick() -> None:
    pass


def _ctx(method: str) -> Any:
    return mp.get_context(method)


# -- 4.3 daemon ------------------------------------------------------------------------------------------


def _daemon_body(conn: Any, method: str, up_event: Any) -> None:
    def on_term(signum: int, frame: Any) -> None:
        conn.send({"event": "SIGTERM", "t": time.time()})
        os._exit(-signum & 0xFF)

    signal.signal(signal.SIGTERM, on_term)
    error = ""
    try:
        _ctx(method).Process(target=_quick).start()
    except AssertionError as exc:
        error = f"AssertionError: {exc}"
    sub = subprocess.run([sys.executable, "-c", "pass"], check=False).returncode
    tty = os.ttyname(0) if os.isatty(0) else None
    conn.send(
        {
            "event": "up",
            "pid": os.getpid(),
            "sid": os.getsid(0),
            "tty": tty,
            "error": error,
            "subprocess": sub,
            "t": time.time(),
        }
    )
    up_event.set()
    while True:
        time.sleep(0.05)


def _normal_body(conn: Any, seconds: float) -> None:
    time.sleep(seconds)
    conn.send({"normal_end": time.time()})


def _daemon_parent(conn: Any, dconn: Any, nconn: Any, method: str, normal_s: float) -> None:
    ctx = _ctx(method)
    up_event = ctx.Event()
    daemon = ctx.Process(target=_daemon_body, args=(dconn, method, up_event), name="daemon", daemon=True)
    daemon.start()
    normal = ctx.Process(target=_normal_body, args=(nconn, normal_s), name="normal")
    normal.start()
    tty = os.ttyname(0) if os.isatty(0) else None
    try:
        daemon.daemon = False
        late = ""
    except AssertionError as exc:
        late = f"AssertionError: {exc}"
    conn.send(
        {
            "pid": os.getpid(),
            "sid": os.getsid(0),
            "tty": tty,
            "daemon": daemon.pid,
            "normal": normal.pid,
            "late": late,
            "t": time.time(),
        }
    )
    up_event.wait(60)  # the daemon has reported it is up (a spawned one takes a while to start)
    conn.send({"code_end": time.time()})
    # returning runs multiprocessing's atexit: terminate() daemons, then join() every child


@experiment(
    "daemon",
    "4.3",
    "a daemonic child is terminated when its parent exits, and cannot have children of its own",
    params={"normal_s": 0.3},
    limits={"normal_s": (0, 10)},
    param_help={"normal_s": "seconds the parent's non-daemonic child runs"},
)
def daemon(lab: Lab) -> None:
    rep = lab.report
    method = lab.method
    ctx = lab.ctx()
    preader, pwriter = ctx.Pipe(duplex=False)
    dreader, dwriter = ctx.Pipe(duplex=False)
    nreader, nwriter = ctx.Pipe(duplex=False)
    parent = lab.ctx().Process(
        target=_daemon_parent, args=(pwriter, dwriter, nwriter, method, float(lab.p("normal_s")))
    )
    with reaped(parent):
        parent.start()
        info = preader.recv()
        up = dreader.recv()
        end = preader.recv()["code_end"]
        parent.join()
        exited = time.time()
        term = dreader.recv() if dreader.poll(2) else {}
        normal_end = nreader.recv()["normal_end"] if nreader.poll(2) else None
    dpid, npid = info["daemon"], info["normal"]
    d_gone, n_gone = status_of(dpid) == "gone", status_of(npid) == "gone"
    if not d_gone:
        kill_and_forget(dpid)
    rep.event(f"parent {info['pid']} started daemonic child {dpid} and normal child {npid}", wall=info["t"])
    rep.event(f"setting .daemon after start(): {info['late']!r}", wall=info["t"])
    rep.event(
        f"daemon {dpid}: starting a Process raised {up['error']!r}; subprocess.run exit {up['subprocess']}",
        wall=up["t"],
    )
    rep.event("parent's code ended (returning from its target)", wall=end)
    if term:
        rep.event(f"daemon {dpid} got {term['event']} ({(term['t'] - end) * 1000:.0f} ms after)", wall=term["t"])
    else:
        rep.event(f"daemon {dpid} reported no SIGTERM")
    if normal_end is not None:
        rep.event(f"normal child {npid} finished its task", wall=normal_end)
    rep.event(f"parent process exited ({(exited - end) * 1000:.0f} ms after its code ended)", wall=exited)
    rep.event(f"after the parent exited: daemon {status_of(dpid)!r}, normal child {status_of(npid)!r}")
    rep.measure("daemon_sigterm_after_code_end_s", round(term["t"] - end, 4) if term else None)
    rep.measure("parent_exit_after_code_end_s", round(exited - end, 4))
    rep.measure("daemon_gone", d_gone)
    rep.measure("normal_gone", n_gone)
    rep.measure(
        "session",
        {
            "parent_sid": info["sid"],
            "daemon_sid": up["sid"],
            "parent_tty": info["tty"],
            "daemon_tty": up["tty"],
        },
    )
    rep.claim(
        "a daemonic child ends automatically when the main process's code ends",
        "holds" if d_gone and term else "wrong",
        f"daemon {dpid} got SIGTERM {(term['t'] - end) * 1000:.0f} ms after its parent's code ended (multiprocessing's "
        f"exit handler terminates daemons) and is gone"
        if d_gone and term
        else f"daemon {dpid}: SIGTERM seen {bool(term)}, gone {d_gone}",
        "4.3.1",
    )
    finished = normal_end is not None and normal_end >= end
    rep.claim(
        "a normal child keeps running after the main process's code ends, until its task is done (table 4.3.3)",
        "holds" if finished else "wrong",
        f"the normal child finished its {lab.p('normal_s')} s task {(normal_end - end) * 1000:.0f} ms after the "
        f"parent's code ended; the parent process waited for it (multiprocessing joins non-daemonic children "
        f"at exit) and exited {(exited - end) * 1000:.0f} ms after its code ended"
        if finished and normal_end is not None
        else f"the normal child did not report finishing its task (gone: {n_gone})",
        "4.3.3",
    )
    rep.claim(
        "a daemonic process may not create child processes",
        "holds" if up["error"] else "wrong",
        f"{up['error'] or 'no error'}; this is multiprocessing's rule only: subprocess.run from the daemon "
        f"exited {up['subprocess']}",
        "4.3.1",
    )
    rep.claim(
        "daemon must be set before start()",
        "holds" if info["late"] else "wrong",
        info["late"] or "setting it after start() raised nothing",
        "5.2.2",
    )
    same = up["sid"] == info["sid"] and up["tty"] == info["tty"]
    rep.claim(
        "a daemon runs in the background, detached from the terminal",
        "wrong" if same else "holds",
        f"daemon=True only means 'terminated when the parent exits': the daemonic child kept its parent's session "
        f"({up['sid']}) and terminal ({up['tty'] or 'none: no terminal here'}); a Unix daemon detaches with "
        "setsid()/double fork"
        if same
        else f"the daemonic child ran in session {up['sid']} (parent {info['sid']}), terminal {up['tty']} (parent "
        f"{info['tty']})",
        "4.3.1",
    )
