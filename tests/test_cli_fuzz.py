"""Malformed values for every option and argument of the mplab CLI: one line, exit 1 or 2, at once.

The cases are generated from the CLI itself (every command, every option that takes a value), so a
new option is fuzzed the day it is added. For each: out of its declared range (negative, zero, one
past the limit, 10**12), nan and infinities, empty, non-numeric, a newline, Rich markup, path
traversal. Each invocation runs the real console entry point (`cli.main.main`) in a forked child of
its own session, against a real Redis (so a value that is wrongly accepted does real work and shows
up, instead of being refused for want of a Redis), and must

- exit with code 1 or 2 within `LIMIT_S` seconds (a hang or a runaway is killed and reported),
- print exactly one non-empty line on stderr and no traceback,
- leave no process behind (every descendant carries a marker in its environment; none may outlive).

Forking the already-imported CLI instead of starting `python -m cli` each time keeps several hundred
invocations within seconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import typer

from cli.main import app

LIMIT_S = 20.0
"""Longest any malformed invocation may run before it counts as a hang."""

PARALLEL = 4
"""Invocations running at once."""

JUNK = ["", "abc", "1\n2", "[/bold]1", "[bold]x", "../../etc/passwd"]
"""Values no numeric option may take."""

BAD_TEXT = ["", "a\nb", "[/bold]x", "[bold]x", "../../etc/passwd", "x" * 300]
"""Values no name, id, mode or queue may take."""

BAD_PATHS = {
    "--file": ["/nonexistent/d/t.json", "/", "/etc/passwd", ""],
    "--state-dir": ["/etc/passwd", "/proc/version"],
    "--json": ["/nonexistent/d/out.json", "/"],
    "--csv": ["/nonexistent/d/out.csv", "/"],
    "--plot": ["/nonexistent/d/out.png", "/"],
}
"""Path options: a missing directory (never created), a directory or a file that is not ours."""

BASE: dict[str, list[str]] = {
    "tickets local": ["--mode", "unsafe", "--window", "0"],
    "tickets submit": ["--mode", "atomic"],
    "lab run": ["identity"],
}
"""Valid values for a command's other required parameters, so only the fuzzed value can be at fault."""

EXTRA: dict[str, list[list[str]]] = {
    "lab run": [
        ["identity", "-p", "children=5000"],
        ["states", "-p", "spin_s=1e9"],
        ["orphan", "-p", "wait_s=inf"],
        ["fork", "-p", "mb=100000"],
        ["identity", "-p", "children=nan"],
        ["identity", "-p", "children=-1"],
        ["identity", "-p", "nokey"],
        ["identity", "-p", "=1"],
        ["identity", "-p", "no_such_param=1"],
        ["identity", "-p", "a\nb=1"],
        ["identity", "-p", "[/bold]x=1"],
    ],
}
"""Hand-written cases: `-p NAME=VALUE` parameters of the lab's experiments (free-form strings to the CLI)."""

ROOT_COMMAND = ["tickets", "local", "--mode", "lock", "--buyers", "2", "--window", "0"]
"""What the global options are tried with: a short local sale, which reads --state-dir and the others."""

EXEMPT = {("--redis-url", ""): "an empty --redis-url means unset, as REDIS_URL='' does"}


@dataclass
class Case:
    """One invocation and what happened to it."""

    argv: list[str]
    shown: list[str]
    """The argv without the Redis URL and state dir every case gets (what a report names)."""
    pid: int = 0
    started: float = 0.0
    code: int | None = None
    killed: bool = False
    out: Path = field(default_factory=Path)
    err: Path = field(default_factory=Path)

    def problem(self) -> str | None:
        """Why this invocation breaks the contract, or None."""
        text = self.err.read_text(errors="replace") if self.err.exists() else ""
        lines = [line for line in text.splitlines() if line.strip()]
        if self.killed:
            return f"still running after {LIMIT_S:.0f} s (killed)"
        if "Traceback" in text:
            return f"traceback, exit {self.code}: {lines[-1] if lines else ''}"
        if self.code not in (1, 2):
            return f"exit {self.code}, stderr {lines[:2]}"
        if len(lines) != 1:
            return f"exit {self.code} with {len(lines)} stderr lines: {lines[:3]}"
        return None


def _commands() -> Iterator[tuple[str, typer.core.TyperCommand]]:
    root = typer.main.get_command(app)

    def walk(cmd: object, path: list[str]) -> Iterator[tuple[str, typer.core.TyperCommand]]:
        subs = getattr(cmd, "commands", None)
        if subs is None:
            yield " ".join(path), cmd  # type: ignore[misc]
            return
        for name, sub in subs.items():
            yield from walk(sub, [*path, name])

    yield from walk(root, [])


def _valued(cmd: object) -> list[object]:
    """The parameters of `cmd` that take a value (flags and --help have nothing to fuzz)."""
    return [p for p in cmd.params if not getattr(p, "is_flag", False) and p.name != "help"]  # type: ignore[attr-defined]


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def numeric_values(param: object) -> list[str]:
    """Out of range (from the declared range, or -1 and 10**12 when none is declared) and not a number."""
    kind = param.type_descriptor.annotation  # type: ignore[attr-defined]
    low, high = param.min, param.max  # type: ignore[attr-defined]
    values = ["-1", "1000000000000"]
    if low is not None:
        values.append(_number(low - 1))
        if low > 0:
            values.append("0")
            if kind is float:
                values.append(_number(low / 2))
    if high is not None:
        values.append(_number(high + 1))
    if kind is float:
        values += ["nan", "-nan", "inf", "-inf", "1e309"]
    else:
        values += ["nan", "inf", "1e9", "2.5"]
    return list(dict.fromkeys(values + JUNK))


def cases_for(path: str) -> list[list[str]]:
    """Every malformed invocation of the command `path` ('' = the global options)."""
    if path == "":  # the global options, each tried with a short local sale
        cmd: object = typer.main.get_command(app)
        prefix, base = [], []
    else:
        cmd = dict(_commands())[path]
        prefix, base = path.split(), BASE.get(path, [])
    found: list[list[str]] = []
    for param in _valued(cmd):
        opt = param.opts[0] if param.param_type_name == "option" else None  # type: ignore[attr-defined]
        kind = param.type_descriptor.annotation  # type: ignore[attr-defined]
        if kind in (int, float):
            values = numeric_values(param)
        elif kind is Path or (opt is not None and opt in BAD_PATHS and kind is not str):
            values = BAD_PATHS.get(opt or "", ["/nonexistent/d/x", "/"])
        elif opt == "--param":
            continue  # free-form NAME=VALUE: see EXTRA
        else:
            values = BAD_TEXT
        for value in values:
            if (opt, value) in EXEMPT:
                continue
            if path == "":
                found.append([f"{opt}={value}", *ROOT_COMMAND])
            elif opt is None:  # an argument: replaces the base's positional value, after `--`
                found.append([*prefix, *[b for b in base if b.startswith("-")], "--", value])
            else:
                rest = base if opt != "--mode" else []
                found.append([*prefix, *rest, f"{opt}={value}"])
    found += [[*prefix, *extra] for extra in EXTRA.get(path, [])]
    return found


def _start(case: Case, tmp: Path, mark: str) -> None:
    case.out, case.err = tmp / f"{id(case)}.out", tmp / f"{id(case)}.err"
    out = os.open(case.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(case.err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    pid = os.fork()
    if pid == 0:  # the child: a fresh session running the console entry point, as `mplab ARGV` would
        code = 1
        try:
            os.setsid()
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            sys.stdin, sys.stdout, sys.stderr = open(0), open(1, "w"), open(2, "w")  # noqa: SIM115
            os.environ.update({"MPLAB_FUZZ": mark, "COLUMNS": "80", "MPLAB_STATE_DIR": str(tmp / "state")})
            os.chdir(tmp)
            sys.argv = ["mplab", *case.argv]
            from cli.main import main

            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()  # what the interpreter does with an uncaught exception (exit 1)
            code = 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os._exit(code)
    os.close(out)
    os.close(err)
    case.pid, case.started = pid, time.monotonic()


def _end_session(pid: int) -> None:
    """Kill whatever is left in the invocation's session (its process group), the leader included."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_all(cases: list[Case], tmp: Path, mark: str) -> None:
    """Run the cases, PARALLEL at a time; each is killed (and reported) after LIMIT_S seconds."""
    waiting, running = list(cases), []
    while waiting or running:
        while waiting and len(running) < PARALLEL:
            case = waiting.pop(0)
            _start(case, tmp, mark)
            running.append(case)
        time.sleep(0.005)
        for case in list(running):
            done, status = os.waitpid(case.pid, os.WNOHANG)
            if done == 0 and time.monotonic() - case.started > LIMIT_S:
                case.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(case.pid, signal.SIGTERM)  # SIGTERM first: its `finally` blocks clean up
                time.sleep(2)
                _end_session(case.pid)
                done, status = os.waitpid(case.pid, 0)
            if done:
                case.code = os.waitstatus_to_exitcode(status)
                _end_session(case.pid)
                running.remove(case)


def leftovers(mark: str) -> list[str]:
    """Processes still carrying this run's marker (detached ones too), killed once listed."""
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("MPLAB_FUZZ") == mark:
                found.append(f"{proc.pid} {proc.info['name']} {' '.join(proc.cmdline())[:120]}")
                proc.kill()
    return found


COMMANDS = ["", *(path for path, cmd in _commands() if _valued(cmd) or path in EXTRA)]


@pytest.mark.slow  # ~400 invocations: 20-40 s in all once every command refuses at once
@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.replace(" ", "-") or "global-options")
def test_malformed_values_are_refused_in_one_line_at_once(command, redis_url, tmp_path):
    missing_before = not Path("/nonexistent").exists()
    mark = uuid.uuid4().hex
    tmp = tmp_path / "run"
    tmp.mkdir()
    defaults = {"--redis-url": redis_url, "--state-dir": str(tmp / "state")}
    cases = []
    for argv in cases_for(command):
        fuzzed = argv[0].split("=", 1)[0] if command == "" else ""
        root = [x for opt, value in defaults.items() if opt != fuzzed for x in (opt, value)]
        cases.append(Case([*root, *argv], shown=argv))
    assert cases, f"no malformed values generated for {command!r}"
    run_all(cases, tmp, mark)
    problems = [f"mplab {' '.join(c.shown)!r}: {why}" for c in cases if (why := c.problem())]
    left = leftovers(mark)
    if missing_before and Path("/nonexistent").exists():
        problems.append("a directory was created for a --file/--json/... path in /nonexistent")
    assert not (problems or left), (
        f"{len(problems)} of {len(cases)} malformed invocations broke the contract:\n"
        + "\n".join(problems)
        + ("\nleft running: " + "; ".join(left) if left else "")
    )


RANGE_IN_HELP = re.compile(r"\d\s*(?:-|–|\.\.|to)\s*[\d,.]+|<=")
"""A range written into an option's help text by hand ("1-1000", "0 to 60", "<= 64")."""


def test_every_numeric_option_declares_a_finite_range_shown_in_help():
    """Every int/float option has a finite min and max (typer then shows `[1<=x<=1000]` in `--help`), or
    states its range in its help text."""
    unbounded = []
    for path, cmd in _commands():
        for param in _valued(cmd):
            if param.type_descriptor.annotation not in (int, float):  # type: ignore[attr-defined]
                continue
            low, high = param.min, param.max  # type: ignore[attr-defined]
            declared = low is not None and high is not None and math.isfinite(low) and math.isfinite(high)
            if not declared and not RANGE_IN_HELP.search(param.help or ""):  # type: ignore[attr-defined]
                unbounded.append(f"mplab {path} {param.opts[0]}")  # type: ignore[attr-defined]
    assert not unbounded, "options without a finite range: " + ", ".join(unbounded)
