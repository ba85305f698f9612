"""Section 5: os.fork (5.1), the Process API and its arguments (5.2), Process subclasses (5.3)."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import psutil

from workers.errors import Unsupported
from workers.lab.base import Lab, experiment, median, status_of, wait_status
from workers.proclife import reaped

# -- 5.1 os.fork -----------------------------------------------------------------------------------------


def _fork_child_report(wfd: int, returned: int, buf: bytearray | None) -> None:
    """In the forked child: report, touch the inherited buffer to trigger copy-on-write, report again."""
    t = time.time()
    w = 200  # the chapter's variable, changed only here
    me = psutil.Process()
    uss_before = me.memory_full_info().uss
    if buf is not None:
        for i in range(0, len(buf), 4096):
            buf[i] = 2
    uss_after = me.memory_full_info().uss
    os.write(wfd, json.dumps({"returned": returned, "pid": os.getpid(), "ppid": os.getppid(), "w": w,
                              "uss_before": uss_before, "uss_after": uss_after, "t": t}).encode())  # fmt: skip


@experiment(
    "fork",
    "5.1",
    "os.fork: return values in parent and child, copy-on-write isolation, waitpid (refused without fork)",
    params={"mb": 64, "repeats": 5},
    limits={"mb": (0, 1024), "repeats": (1, 50)},
    param_help={"mb": "MiB the parent holds when it forks (copy-on-write)", "repeats": "forks timed"},
)
def fork(lab: Lab) -> None:
    rep = lab.report
    if not hasattr(os, "fork"):
        raise Unsupported(f"os.fork does not exist on {sys.platform}: section 5.1 applies to Linux/Unix only")
    w = 100
    size = int(lab.p("mb")) * 1024 * 1024
    buf = bytearray(b"\x01" * size) if size else None
    rep.event(f"before fork: pid {os.getpid()}, w = {w}, holding {lab.p('mb')} MiB")
    rfd, wfd = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child: never return into the caller's stack
        code = 0
        try:
            os.close(rfd)
            _fork_child_report(wfd, pid, buf)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    forked = time.perf_counter()
    fork_s = forked - t0
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        got = json.loads(fh.read() or b"{}")
    zombie, _ = wait_status(pid, {"zombie"}, 5)
    rep.event(f"parent: os.fork() returned {pid} in {fork_s * 1000:.2f} ms; parent's w is still {w}", at=forked)
    rep.event(
        f"child: os.fork() returned {got.get('returned')}, pid {got.get('pid')}, ppid {got.get('ppid')}, w = "
        f"{got.get('w')}",
        wall=got.get("t"),
    )
    rep.event(f"child exited, not yet waited for: psutil says {zombie!r}")
    _, status = os.waitpid(pid, 0)
    rep.event(f"os.waitpid({pid}, 0) -> exit code {os.waitstatus_to_exitcode(status)}; now {status_of(pid)!r}")
    times = []
    for _ in range(max(1, int(lab.p("repeats")))):
        start = time.perf_counter()
        child = os.fork()
        if child == 0:
            os._exit(0)
        times.append(time.perf_counter() - start)
        os.waitpid(child, 0)
    del buf
    before, after = got.get("uss_before", 0), got.get("uss_after", 0)
    rep.event(
        f"child's unique memory (USS): {before / 2**20:.1f} MiB right after fork, {after / 2**20:.1f} MiB "
        f"after "
        f"writing one byte per page of the {lab.p('mb')} MiB buffer"
    )
    rep.measure("fork_call_ms_median", round(median(times) * 1000, 3))
    rep.measure("child_uss_mib", {"after_fork": round(before / 2**20, 2), "after_writes": round(after / 2**20, 2)})
    rep.measure("buffer_mib", lab.p("mb"))
    rep.claim(
        "fork() returns the child's PID in the parent and 0 in the child",
        "holds" if pid == got.get("pid") and got.get("returned") == 0 else "wrong",
        f"parent got {pid}, child got {got.get('returned')} (child pid {got.get('pid')})",
        "5.1.1",
    )
    got0 = got.get("returned") == 0
    rep.claim(
        "in the child, fork() returns the parent's PID, 'fixed as 0' (5.1.1's wording)",
        "wrong" if got0 else "holds" if got.get("returned") == os.getpid() else "wrong",
        f"the child got 0, not the parent's PID ({os.getpid()}): 0 only says 'you are the child'; it finds its "
        f"parent with os.getppid() = {got.get('ppid')}"
        if got0
        else f"the child got {got.get('returned')} (parent pid {os.getpid()})",
        "5.1.1",
    )
    rep.claim(
        "the child's change to w does not affect the parent",
        "holds" if w == 100 and got.get("w") == 200 else "wrong",
        f"child w = {got.get('w')}, parent w = {w}",
        "5.1.2",
    )
    if size:
        cow = before < 0.25 * size and after > 0.75 * size
        rep.claim(
            "fork is fast thanks to copy-on-write",
            "holds" if cow else "wrong",
            f"fork() took {median(times) * 1000:.2f} ms (median) with {lab.p('mb')} MiB mapped; the child's "
            f"own "
            f"memory grew from {before / 2**20:.1f} to {after / 2**20:.1f} MiB only when it wrote the pages",
            "5.1.3",
        )
    if size:
        light = before < 0.25 * size
        rep.claim(
            "fork uses a lot of memory (内存使用量较大), even with copy-on-write",
            "wrong" if light else "holds",
            f"right after fork the child's unique memory (USS) was {before / 2**20:.1f} MiB while the parent held "
            f"{lab.p('mb')} MiB: the pages are shared until written; a child that writes all of them costs a full "
            f"copy ({after / 2**20:.1f} MiB here), so the cost is what children write, not the fork"
            if light
            else f"right after fork the child's unique memory was already {before / 2**20:.1f} MiB of the "
            f"{lab.p('mb')} MiB the parent held",
            "5.1.3",
        )
    rep.claim(
        "without wait()/waitpid() the forked child becomes a zombie",
        "holds" if zombie == "zombie" else "wrong",
        f"psutil saw {zombie!r} before waitpid",
        "5.1.3",
    )
    rep.claim("Windows has no os.fork", "not-measured", f"this is {sys.platform}, where os.fork exists", "5.1")


# -- 5.2 the Process API ---------------------------------------------------------------------------------


def task_with_args(name: str, age: int, city: str = "Unknown", **kwargs: Any) -> str:
    """The chapter's 5.2.3 target (note the **kwargs)."""
    return f"姓名: {name}, 年龄: {age}, 城市: {city}, 其他信息: {kwargs}"


def strict_task(name: str, age: int, city: str = "Unknown") -> str:
    """The same without **kwargs."""
    return f"姓名: {name}, 年龄: {age}, 城市: {city}"


def _guarded(conn: Any, strict: bool, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """What Process.run does (target(*args, **kwargs)), reporting the TypeError instead of printing it."""
    target = strict_task if strict else task_with_args
    try:
        conn.send(("ok", target(*args, **kwargs)))
    except TypeError as exc:
        conn.send(("TypeError", str(exc)))
        sys.exit(1)


def _whoami(conn: Any) -> None:
    conn.send(os.getpid())


def _stubborn(conn: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn.send("ready")
    time.sleep(30)


def _sleeper(seconds: float) -> None:
    time.sleep(seconds)


def _exit_with(code: int) -> None:
    sys.exit(code)


def _raise() -> None:
    sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the child's traceback is not the user's business
    raise ValueError("boom")


ARG_CASES: list[tuple[str, bool, tuple[Any, ...], dict[str, Any]]] = [
    ("args only", False, ("张三", 25), {}),
    ("kwargs only", False, (), {"name": "李四", "age": 30, "city": "北京"}),
    ("mixed", False, ("王五", 28), {"city": "上海", "job": "程序员", "hobby": "编程"}),
    ("missing age", False, ("张三",), {}),
    ("misspelt 'nam' (chapter's function)", False, (), {"nam": "李四", "age": 30}),
    ("misspelt 'nam' (no **kwargs)", True, (), {"nam": "李四", "age": 30}),
    ("kwargs overriding args", False, ("王五", 28), {"name": "赵六"}),
]


@experiment(
    "process-api",
    "5.2",
    "start/join(timeout)/terminate/kill/is_alive/exitcode/name/pid, run vs start, args/kwargs errors",
    params={"join_timeout": 0.2},
    limits={"join_timeout": (0.01, 10)},
    param_help={"join_timeout": "seconds join(timeout) waits on a sleeping child"},
)
def process_api(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    timeout = float(lab.p("join_timeout"))
    p = ctx.Process(target=_sleeper, args=(30,), name="Worker-1")
    with reaped(p):
        p.start()
        rep.event(f"start(): name {p.name!r}, pid {p.pid}, is_alive {p.is_alive()}, exitcode {p.exitcode}")
        t0 = time.perf_counter()
        p.join(timeout)
        waited = time.perf_counter() - t0
        alive_after_join = p.is_alive()
        rep.event(
            f"join({timeout}) returned after {waited * 1000:.0f} ms: is_alive {alive_after_join}, exitcode {p.exitcode}"
        )
        p.terminate()
        p.join()
        rep.event(f"terminate(); join() -> is_alive {p.is_alive()}, exitcode {p.exitcode} (-SIGTERM)")
    term_code = p.exitcode
    reader, writer = ctx.Pipe()
    s = ctx.Process(target=_stubborn, args=(writer,), name="stubborn")
    with reaped(s):
        s.start()
        reader.recv()
        s.terminate()
        s.join(0.3)
        survived = s.is_alive()
        rep.event(f"a child that ignores SIGTERM: terminate(); join(0.3) -> is_alive {survived}")
        s.kill()
        s.join()
        rep.event(f"kill(); join() -> exitcode {s.exitcode} (-SIGKILL)")
    codes = {}
    for label, target, args in (
        ("returns", _sleeper, (0,)),
        ("sys.exit(3)", _exit_with, (3,)),
        ("raises", _raise, ()),
    ):
        c = ctx.Process(target=target, args=args)
        with reaped(c):
            c.start()
            c.join()
        codes[label] = c.exitcode
    rep.event(f"exit codes: {codes}")
    r = ctx.Process(target=_whoami, args=(writer,))
    r.run()
    in_run = reader.recv()
    with reaped(r):
        r.start()
        in_start = reader.recv()
    rep.event(f"p.run() executed the target in pid {in_run} (the parent); p.start() in pid {in_start}")
    rep.measure("join_timeout_waited_s", round(waited, 3))
    rep.measure("exitcodes", {**codes, "terminate": term_code, "kill": s.exitcode})
    rep.claim(
        "join(timeout) waits at most timeout seconds",
        "holds" if alive_after_join and waited < timeout + 0.5 else "wrong",
        f"join({timeout}) returned after {waited * 1000:.0f} ms with the child still alive",
        "5.2.2",
    )
    ended = term_code == -signal.SIGTERM
    rep.claim(
        "terminate() forcibly ends the child",
        "holds" if ended else "wrong",
        f"a child sleeping in its task was ended by terminate() (SIGTERM): exitcode {term_code}"
        if ended
        else f"after terminate() the sleeping child's exitcode was {term_code}, not -{int(signal.SIGTERM)}",
        "5.2.2",
    )
    rep.edge(
        "terminate() also ends a child that ignores SIGTERM",
        "wrong" if survived else "holds",
        f"a child with SIGTERM set to SIG_IGN was still alive 0.3 s after terminate(); kill() (SIGKILL, cannot be "
        f"ignored) ended it with exitcode {s.exitcode}"
        if survived
        else f"the child that ignores SIGTERM was gone 0.3 s after terminate() (exitcode {s.exitcode})",
        "5.2.2",
    )
    rep.claim(
        "start() runs run() in the new process; run() itself is an ordinary call",
        "holds" if in_run == os.getpid() and in_start == r.pid else "wrong",
        f"run() called directly ran in pid {in_run} (parent {os.getpid()}); start() ran it in {in_start}",
        "5.2.2",
    )
    _arguments(lab)


def _arguments(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    outcome: dict[str, dict[str, Any]] = {}
    for label, strict, args, kwargs in ARG_CASES:
        reader, writer = ctx.Pipe(duplex=False)
        c = ctx.Process(target=_guarded, args=(writer, strict, args, kwargs))
        with reaped(c):
            c.start()  # never raises for wrong arguments: they are only applied in the child
            kind, text = reader.recv()
            c.join()
        outcome[label] = {"result": kind, "message": text, "exitcode": c.exitcode}
        rep.event(f"args={args!r} kwargs={kwargs!r}: start() ok; child: {kind}: {text} (exitcode {c.exitcode})")
    rep.measure("arguments", outcome)
    miss = outcome["missing age"]
    rep.claim(
        "args=('张三',) fails: missing age",
        "holds" if "missing 1 required positional argument: 'age'" in miss["message"] else "wrong",
        f"in the child, not at start(): {miss['message']} (exitcode {miss['exitcode']})",
        "5.2.3",
    )
    nam, no_kw = outcome["misspelt 'nam' (chapter's function)"], outcome["misspelt 'nam' (no **kwargs)"]
    rep.claim(
        "kwargs {'nam': ...} fails with \"unexpected keyword argument 'nam'\"",
        "holds" if "unexpected keyword" in nam["message"] else "wrong",
        f"the chapter's task_with_args has **kwargs, which swallows 'nam': {nam['message']}; only without "
        f"**kwargs: {no_kw['message']}",
        "5.2.3",
    )
    over = outcome["kwargs overriding args"]
    rep.claim(
        "kwargs complete or override the positional args",
        "wrong" if over["result"] == "TypeError" else "holds",
        f"args=('王五', 28), kwargs={{'name': '赵六'}}: {over['message']}; "
        "kwargs can only fill parameters args left open",
        "5.2.3",
    )
