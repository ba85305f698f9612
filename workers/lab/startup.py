"""Section 5.3-5.4: Process subclasses, and the start methods (fork/spawn/forkserver) measured."""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
from multiprocessing.process import BaseProcess
from typing import Any

from workers.lab import probe
from workers.lab.base import Lab, experiment, median, timed
from workers.lab.verdicts import interleaved, speed_verdict, spread
from workers.proclife import reaped

# -- 5.3 Process subclasses ------------------------------------------------------------------------------


class ContextProcess(BaseProcess):
    """A Process subclass bound to an explicit start method (what `ctx.Process` is, but subclassable)."""

    def __init__(self, method: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._method = method
        self._start_method = method

    def _Popen(self, process_obj: BaseProcess) -> Any:  # noqa: N802 - multiprocessing's name
        return mp.get_context(self._method).Process._Popen(process_obj)  # type: ignore[attr-defined]


class CustomWorker(ContextProcess):
    """The chapter's CustomWorker: run() overridden, result kept in self.result."""

    def __init__(self, method: str, conn: Any, task_name: str, work_items: int, name: str | None = None) -> None:
        super().__init__(method, name=name)
        self.conn = conn
        self.task_name = task_name
        self.work_items = work_items
        self.result: str | None = None

    def run(self) -> None:
        current = mp.current_process()
        self.result = f"{self.task_name} 完成"
        self.conn.send({"name": current.name, "pid": os.getpid(), "result": self.result})


class DataProcessor(ContextProcess):
    """The chapter's DataProcessor: processed_data filled in run()."""

    def __init__(self, method: str, conn: Any, data_list: list[int], name: str | None = None) -> None:
        super().__init__(method, name=name)
        self.conn = conn
        self.data_list = data_list
        self.processed_data: list[int] = []

    def run(self) -> None:
        self.processed_data = [x * x for x in self.data_list]
        self.conn.send({"name": self.name, "pid": os.getpid(), "processed": self.processed_data})


class Forgetful(ContextProcess):
    """A subclass whose __init__ forgets super().__init__()."""

    def __init__(self, method: str) -> None:  # noqa: B026
        self.x = 1


@experiment(
    "subclass",
    "5.3",
    "a Process subclass overriding run(); what its attributes look like in the parent afterwards",
)
def subclass(lab: Lab) -> None:
    rep, method = lab.report, lab.method
    reader, writer = lab.ctx().Pipe(duplex=False)
    workers = [
        CustomWorker(method, writer, "数据清洗", 3, name="Cleaner"),
        CustomWorker(method, writer, "数据分析", 4, name="Analyzer"),
    ]
    proc = DataProcessor(method, writer, [1, 2, 3, 4, 5], name="DataProcessor")
    with reaped(*workers, proc):
        for p in [*workers, proc]:
            p.start()
        reports = {r["name"]: r for r in (reader.recv() for _ in range(3))}
    for p in workers:
        rep.event(f"{p.name} (pid {p.pid}) run() set result {reports[p.name]['result']!r}; parent sees {p.result!r}")
    rep.event(f"DataProcessor computed {reports['DataProcessor']['processed']}; parent sees {proc.processed_data!r}")
    try:
        Forgetful(method).start()
        forgot = "no error"
    except (AttributeError, AssertionError) as exc:
        forgot = f"{type(exc).__name__}: {exc}"
    rep.event(f"a subclass without super().__init__(): start() -> {forgot}")
    rep.measure("child_results", reports)
    rep.measure("parent_view", {p.name: p.result for p in workers} | {"DataProcessor": proc.processed_data})
    in_child = all(reports[p.name]["pid"] == p.pid != os.getpid() for p in [*workers, proc])
    rep.claim(
        "overriding run() makes start() execute it in a new process named as given",
        "holds" if in_child and all(reports[p.name]["name"] == p.name for p in workers) else "wrong",
        f"run() ran in pids {[reports[p.name]['pid'] for p in [*workers, proc]]}, parent {os.getpid()}",
    )
    lost = all(p.result is None for p in workers) and proc.processed_data == []
    rep.claim(
        "results stored on self in run() (self.result, self.processed_data) are available in the parent",
        "wrong" if lost else "holds",
        "run() filled them in the child's copy of the object; after join() the parent still has "
        "result=None and processed_data=[]: send results back through a Queue/Pipe"
        if lost
        else f"the parent sees {[p.result for p in workers]} and {proc.processed_data}",
    )
    rep.claim(
        "a subclass must call super().__init__()",
        "holds" if forgot != "no error" else "wrong",
        f"without it start() fails: {forgot}",
    )


# -- 5.4 start methods -----------------------------------------------------------------------------------


GUARD_TIMEOUT_S = 30.0
"""Seconds a guard/no-guard script may run before it is killed (counted as endless recursion)."""

GUARD_SCRIPT = """\
import multiprocessing as mp, os
print("module code ran in", os.getpid(), flush=True)

def worker():
    print("worker ran in", os.getpid(), flush=True)

def main():
    p = mp.get_context({method!r}).Process(target=worker)
    p.start()
    p.join()
    print("exitcode", p.exitcode, flush=True)

{call}
"""


def _guard_case(method: str, guarded: bool, timeout: float) -> dict[str, Any]:
    """Run a script that starts a Process with or without the `__main__` guard; what happened."""
    call = 'if __name__ == "__main__":\n    main()' if guarded else "main()"
    with tempfile.TemporaryDirectory(prefix="mplab-guard-") as tmp:
        path = os.path.join(tmp, "no_guard.py" if not guarded else "guard.py")
        with open(path, "w") as fh:
            fh.write(GUARD_SCRIPT.format(method=method, call=call))
        proc = subprocess.Popen(
            [sys.executable, path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            timed_out = True
    pids = {line.split()[-1] for line in out.splitlines() if line.startswith("module code ran")}
    errors = _errors(err)
    return {
        "method": method,
        "guard": guarded,
        "returncode": proc.returncode,
        "timed_out": timed_out,
        "module_code_runs": len(pids),
        "worker_ran": any(line.startswith("worker ran") for line in out.splitlines()),
        "child_exitcode": next((line.split()[-1] for line in out.splitlines() if line.startswith("exitcode")), None),
        "error": errors[-1] if errors else "",
    }


@experiment(
    "start-methods",
    "5.4",
    "fork/spawn/forkserver start+join cost, why spawn/forkserver need the __main__ guard, the default",
    params={"repeats": 5},
    limits={"repeats": (1, 50)},
    param_help={"repeats": "start+join repetitions per method (median reported)"},
)
def start_methods(lab: Lab) -> None:
    rep = lab.report
    available = [m for m in ("fork", "forkserver", "spawn") if m in mp.get_all_start_methods()]
    default = mp.get_context().get_start_method()
    rep.event(f"Python {sys.version.split()[0]} on {sys.platform}: available {available}, default {default!r}")
    costs: dict[str, dict[str, Any]] = {}

    def once(method: str) -> float:
        return timed(functools.partial(_start_join, mp.get_context(method)), 1)[0]

    cold = {method: once(method) for method in available}  # the fork server starts on first use
    warm = interleaved({method: functools.partial(once, method) for method in available}, int(lab.p("repeats")))
    for method in available:
        costs[method] = {
            "first_ms": round(cold[method] * 1000, 2),
            "median_ms": round(median(warm[method]) * 1000, 2),
            "spread_ms": spread(warm[method], 1000, 2),
            "samples_s": warm[method],
        }
        rep.event(
            f"{method:10} start+join: first {cold[method] * 1000:.1f} ms, then {spread(warm[method], 1000, 2)} ms "
            "(median (min-max); methods measured in turn)"
        )
    rep.measure("start_join_ms", costs)
    rep.measure("default_start_method", default)
    cases = (("fork", False), ("spawn", False), ("spawn", True))
    guard = [_guard_case(m, g, GUARD_TIMEOUT_S) for m, g in cases]
    if "forkserver" in available:
        guard.insert(2, _guard_case("forkserver", False, GUARD_TIMEOUT_S))
    for g in guard:
        rep.event(
            f"{g['method']:10} {'with' if g['guard'] else 'without'} guard: module code ran in "
            f"{g['module_code_runs']} process(es), worker ran {g['worker_ran']}, child exit "
            f"{g['child_exitcode']}{', ' + g['error'] if g['error'] else ''}"
        )
    rep.measure("main_guard", guard)
    _verdicts(lab, costs, default, guard)


def _errors(stderr: str) -> list[str]:
    """Each exception in a stderr, whole: 'RuntimeError: ...' with its continuation lines joined."""
    out: list[str] = []
    current: list[str] | None = None
    for raw in stderr.splitlines():
        line = raw.strip()
        starts = ("Error:" in line or "Error " in line) and not raw.startswith(" ") and ":" in line
        if starts:
            current = [line]
            out.append("")
        elif current is not None and (not line or raw[:1].isspace()):
            if line:  # the message's indented continuation (blank lines inside it are skipped)
                current.append(line)
        else:
            current = None
        if current is not None:
            out[-1] = " ".join(current)
    return out


def _start_join(ctx: Any) -> None:
    p = ctx.Process(target=probe.noop)
    p.start()
    p.join()


def _verdicts(lab: Lab, costs: dict[str, dict[str, Any]], default: str, guard: list[dict[str, Any]]) -> None:
    rep = lab.report
    spawn_bad = next(g for g in guard if g["method"] == "spawn" and not g["guard"])
    spawn_ok = next(g for g in guard if g["method"] == "spawn" and g["guard"])
    fork_ok = next((g for g in guard if g["method"] == "fork"), None)
    runs = spawn_bad["module_code_runs"]
    if spawn_bad["timed_out"]:
        endless = (
            f"the script was still running after {GUARD_TIMEOUT_S:.0f} s and was killed; its main module had run "
            f"in {runs} process(es)"
            + (": the re-imports kept creating processes" if runs > 2 else ", so it hung rather than recursed")
        )
    elif runs <= 2:
        endless = (
            f"the main module ran in {runs} process(es), then the child stopped with "
            f"{spawn_bad['error'] or 'an error'} (exit {spawn_bad['child_exitcode']}): multiprocessing refuses to "
            "start a process while a child is still importing; no recursion"
        )
    else:
        endless = (
            f"the main module ran in {runs} processes before the script ended (exit {spawn_bad['returncode']}): "
            "each re-import started another process"
        )
    rep.claim(
        "without `if __name__ == '__main__':` spawn re-imports the main module and creates processes endlessly",
        "holds" if runs > 2 else "not-measured" if spawn_bad["timed_out"] else "wrong",
        endless,
        "5.4.2",
    )
    needed = spawn_bad["child_exitcode"] not in ("0", None) and spawn_ok["child_exitcode"] == "0"
    rep.claim(
        "spawn (Windows, and macOS/forkserver) needs the __main__ guard; fork does not",
        "holds" if needed and (fork_ok is None or fork_ok["child_exitcode"] == "0") else "wrong",
        f"spawn without guard: worker ran {spawn_bad['worker_ran']}; with guard: {spawn_ok['worker_ran']}"
        + (f"; fork without guard: worker ran {fork_ok['worker_ran']}" if fork_ok else ""),
        "5.4.2",
    )
    on_linux = sys.platform.startswith("linux")
    rep.claim(
        "only Windows starts children by re-importing the main module (Linux forks)",
        ("holds" if default == "fork" else "outdated") if on_linux else "wrong",
        f"the default here is {default!r} (Python {sys.version.split()[0]}, {sys.platform}); macOS defaults "
        f"to "
        "spawn since Python 3.8 and Linux to forkserver since 3.14, both re-import the main module",
        "5.4.1",
    )
    if "fork" in costs and "spawn" in costs:
        f, s = costs["fork"]["median_ms"], costs["spawn"]["median_ms"]
        verdict = speed_verdict(costs["fork"]["samples_s"], costs["spawn"]["samples_s"])
        rep.claim(
            "creating processes the Windows way (spawn) costs more than fork",
            verdict,
            f"start+join: spawn {costs['spawn']['spread_ms']} ms vs fork {costs['fork']['spread_ms']} ms "
            f"({s / max(f, 1e-9):.1f}x by median"
            + (f"; forkserver {costs['forkserver']['spread_ms']} ms" if "forkserver" in costs else "")
            + "); the child imports only the module of its target, not the mplab CLI"
            + ("" if verdict != "too-close" else ": the spreads overlap, too close to call"),
            "5.4.3",
            speed=True,
        )
