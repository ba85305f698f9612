"""Section 7.2: subprocess.run and Popen as the chapter uses them, including what they leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from workers.errors import LabError
from workers.lab.base import Lab, experiment, status_of, wait_status
from workers.lab.proctree import (
    SPAWNS_GRANDCHILD,
    ProcessTree,
    chapter_timeouts,
    kill_tree_on_timeout,
    parse_pid,
    text_of,
)

PY = sys.executable

# The chapter's inline programs, verbatim (7.2.2 run_python_script, 7.2.3 popen_realtime_output).
CHAPTER_SCRIPT = """
                import sys
                import os
                print(f"Hello from subprocess!")
                print(f"Current PID: {os.getpid()}")
                print(f"Arguments: {sys.argv[1:]}")
                for i in range(3):
                    print(f"Count: {i+1}")
                """
CHAPTER_REALTIME = """
    import time
    import sys
    for i in range(10):
    print(f"Real-time output {i+1}")
    sys.stdout.flush()  # 刷新缓冲区
    time.sleep(0.5)"""

LINES = "import time,sys\nfor i in range(5):\n    print(f'line {{i}}'{flush})\n    time.sleep({gap})\n"
RUN_TIMEOUT_TRIES = 3
"""How often run(timeout) is tried, with a timeout 4x longer each time, when the child was killed before it
had even reported its grandchild (a machine so loaded that starting Python took longer than the timeout)."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    return env


def _stream(code: str) -> list[tuple[str, float]]:
    """Popen with bufsize=1 (the chapter's "line buffering"); when each line arrived."""
    start = time.perf_counter()
    with subprocess.Popen([PY, "-c", code], stdout=subprocess.PIPE, text=True, bufsize=1, env=_env()) as proc:
        assert proc.stdout is not None
        seen = [(line.strip(), round(time.perf_counter() - start, 3)) for line in proc.stdout]
    return seen


@experiment(
    "subprocess",
    "7.2",
    "run (capture/input/check/timeout), Popen streaming and stdin, missing program, killing a process tree",
    params={"timeout_s": 1.0},
    limits={"timeout_s": (0.1, 10)},
    param_help={"timeout_s": "timeout given to the long-running child"},
)
def subprocess_exp(lab: Lab) -> None:
    rep = lab.report
    version = subprocess.run([PY, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    rep.event(f"run([python, '--version'], capture_output=True) -> {version!r}")
    fruit = "apple\n                    banana\n cherry\n apricot\n blueberry"
    grep = "import sys\nfor line in sys.stdin:\n    if 'ap' in line: print(line.strip())"
    kept = subprocess.run([PY, "-c", grep], input=fruit, capture_output=True, text=True).stdout.split()
    rep.event(f"run(input=...) through a 'grep ap' filter -> {kept}")
    verbatim = {}
    for label, code in (("run_python_script", CHAPTER_SCRIPT), ("popen_realtime_output", CHAPTER_REALTIME)):
        r = subprocess.run([PY, "-c", code, "arg1"], capture_output=True, text=True)
        verbatim[label] = {"returncode": r.returncode, "error": (r.stderr.strip().splitlines() or [""])[-1]}
        rep.event(f"the chapter's {label} program, verbatim: exit {r.returncode}, {verbatim[label]['error']}")
    try:
        subprocess.run(["nonexistent_command"], capture_output=True, text=True)
        missing = "returned"
    except FileNotFoundError as exc:
        missing = f"FileNotFoundError: {exc.strerror}"
    rep.event(f"run(['nonexistent_command']) -> {missing}")
    try:
        subprocess.run(
            [PY, "-c", "raise ValueError('Something went wrong!')"],
            check=True,
            capture_output=True,
            text=True,
        )
        failed: dict[str, Any] = {"raised": "nothing"}
    except subprocess.CalledProcessError as exc:
        failed = {
            "raised": "CalledProcessError",
            "returncode": exc.returncode,
            "stderr": exc.stderr.strip().splitlines()[-1],
        }
    rep.event(f"run(check=True) on a failing program -> {failed}")
    listing = subprocess.run(["ls", "/nonexistent/directory"], capture_output=True, text=True)
    by_hand = {"returncode": listing.returncode, "stderr": listing.stderr.strip()}
    rep.event(f"run(['ls', '/nonexistent/directory']) without check: {by_hand}")
    rep.measure("returncode_by_hand", by_hand)
    rep.claim(
        "checking result.returncode by hand detects a failed command (no exception is raised)",
        "holds" if listing.returncode != 0 and listing.stderr else "wrong",
        f"run() returned normally with returncode {listing.returncode} and stderr {by_hand['stderr']!r}: the "
        "failure is visible only to code that checks returncode (or passes check=True)"
        if listing.returncode != 0
        else "ls of a missing directory returned 0",
        "7.2.4",
    )
    gap = 0.05
    flushed = _stream(LINES.format(flush=", flush=True", gap=gap))
    buffered = _stream(LINES.format(flush="", gap=gap))
    rep.event(f"Popen line by line, child flushes: arrivals {[t for _, t in flushed]} s")
    rep.event(f"Popen with bufsize=1, child does not flush: arrivals {[t for _, t in buffered]} s")
    inter = _interactive()
    rep.event(f"Popen([python, '-i']) fed 7 lines on stdin -> stdout {inter}")
    zombie = _popen_zombie()
    rep.event(f"Popen without wait(): the finished child is {zombie[0]!r}; after poll(): {zombie[1]!r}")
    tree = _timeouts(lab)
    rep.measure("stream_arrivals_s", {"flushed": flushed, "not_flushed": buffered})
    rep.measure("verbatim_chapter_programs", verbatim)
    rep.measure("timeouts", tree)
    _verdicts(lab, kept, verbatim, missing, failed, flushed, buffered, inter, zombie, tree, gap)


def _interactive() -> list[str]:
    commands = [
        "print('Hello from interactive Python!')",
        "x = 10",
        "y = 20",
        "print(f'x + y = {x + y}')",
        "import math",
        "print(f'sqrt(100) = {math.sqrt(100)}')",
        "exit()",
    ]
    with subprocess.Popen(
        [PY, "-i"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    ) as proc:
        out, _ = proc.communicate("\n".join(commands) + "\n", timeout=30)
    return [line for line in out.splitlines() if line.strip()]


def _popen_zombie() -> tuple[str, str]:
    proc = subprocess.Popen([PY, "-c", "pass"])
    status, _ = wait_status(proc.pid, {"zombie"}, 10)
    proc.poll()
    after = status_of(proc.pid)
    proc.wait()
    return status, after


def _timeouts(lab: Lab) -> dict[str, Any]:
    timeout = float(lab.p("timeout_s"))
    return {
        "chapter_code": chapter_timeouts(timeout),
        "run_timeout": _run_timeout(lab, timeout),
        "chapter_popen": _chapter_popen(lab, timeout),
        "killpg": _killpg_case(lab, timeout),
    }


def _run_timeout(lab: Lab, timeout: float) -> dict[str, Any]:
    """subprocess.run(timeout=...) on a child that started a grandchild: what is left after TimeoutExpired."""
    rep = lab.report
    tried = []
    for attempt in range(RUN_TIMEOUT_TRIES):
        limit = timeout * 4**attempt
        tried.append(limit)
        with ProcessTree() as tree:
            try:
                # a new session only so that the cleanup can kill the whole tree; run() kills just the child
                done = subprocess.run(
                    [PY, "-c", SPAWNS_GRANDCHILD],
                    stdin=tree.stdin,
                    capture_output=True,
                    timeout=limit,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired as exc:
                grandchild = parse_pid(text_of(exc.stdout))
                if grandchild is None:
                    rep.event(f"run(timeout={limit}) killed the child before it reported its grandchild; again")
                    continue
                tree.track(grandchild)
                survivor = status_of(grandchild)
                rep.event(
                    f"run(timeout={limit}) -> TimeoutExpired; the child was killed, its child {grandchild} is "
                    f"{survivor!r}"
                )
                return {"grandchild": grandchild, "grandchild_status": survivor, "timeouts_tried": tried}
            rep.event(f"run() returned {done.returncode} before the timeout: {text_of(done.stderr).strip()[-200:]}")
            return {"grandchild": None, "grandchild_status": None, "timeouts_tried": tried, "returned": True}
    return {"grandchild": None, "grandchild_status": None, "timeouts_tried": tried}


def _chapter_popen(lab: Lab, timeout: float) -> dict[str, Any]:
    """The chapter's Popen pattern: communicate(timeout) -> kill() -> communicate()."""
    rep = lab.report
    with ProcessTree() as tree:
        proc = subprocess.Popen(
            [PY, "-c", SPAWNS_GRANDCHILD],
            stdin=tree.stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,  # unbuffered: readline() takes the pid line and nothing more
            start_new_session=True,  # for the cleanup only: the pattern itself kills just the child
        )
        assert proc.stdout is not None
        tree.track(proc.pid)
        try:
            grandchild = parse_pid(text_of(proc.stdout.readline()))  # before the timeout clock starts
            if grandchild is None:
                raise LabError("the Popen child exited without reporting its grandchild's pid")
            tree.track(grandchild)
            try:
                proc.communicate(timeout=timeout)
                raise LabError("the Popen child ended although it waits on stdin")
            except subprocess.TimeoutExpired:
                pass
            proc.kill()
            try:
                proc.communicate(timeout=1)
                hung = False
            except subprocess.TimeoutExpired:
                hung = True
            survivor = status_of(grandchild)
        finally:
            tree.end()  # the grandchild reads EOF and exits: it releases the stdout pipe
            proc.communicate()
    rep.event(
        f"chapter's Popen timeout: kill() then communicate() "
        f"{'was still blocked after 1 s' if hung else 'returned'}: grandchild {grandchild} ({survivor!r}) "
        f"{'holds' if hung else 'held'} the stdout pipe"
    )
    return {"communicate_blocked": hung, "grandchild": grandchild, "grandchild_status": survivor}


def _killpg_case(lab: Lab, timeout: float) -> dict[str, Any]:
    """The fix: a new session, and os.killpg on timeout."""
    with ProcessTree() as tree:
        res = kill_tree_on_timeout([PY, "-c", SPAWNS_GRANDCHILD], timeout, stdin=tree.stdin, first_line=True)
        grandchild = parse_pid(res["first_line"])
        if grandchild is None:
            raise LabError("the killpg child exited without reporting its grandchild's pid")
        tree.pids.add(grandchild)
        left, _ = wait_status(grandchild, {"zombie", "gone"}, 3)
        child_after = status_of(res["pid"])
    lab.report.event(
        f"new session + os.killpg on timeout: child {res['pid']} {child_after!r}, grandchild "
        f"{grandchild} {left!r} right after (then reaped by its adopter)"
    )
    return {"timed_out": res["timed_out"], "grandchild": grandchild, "grandchild_status": left}


def _verdicts(
    lab: Lab,
    kept: list[str],
    verbatim: dict[str, dict[str, Any]],
    missing: str,
    failed: dict[str, Any],
    flushed: list[tuple[str, float]],
    buffered: list[tuple[str, float]],
    inter: list[str],
    zombie: tuple[str, str],
    tree: dict[str, Any],
    gap: float,
) -> None:
    rep = lab.report
    rep.claim(
        "run(input=...) feeds stdin and captures stdout",
        "holds" if kept == ["apple", "apricot"] else "wrong",
        f"filter kept {kept}",
        "7.2.2",
    )
    broken = all("IndentationError" in v["error"] for v in verbatim.values())
    rep.claim(
        "the chapter's inline `python -c` programs print their output",
        "wrong" if broken else "holds",
        "; ".join(f"{k}: exit {v['returncode']}, {v['error']}" for k, v in verbatim.items())
        + " (the code strings are indented inside the source)",
        "7.2.2",
    )
    rep.claim(
        "run(['nonexistent_command']) returns a non-zero returncode and stderr",
        "wrong" if missing.startswith("FileNotFoundError") else "holds",
        f"it raises {missing}; there is no returncode (7.2.4 catches FileNotFoundError correctly)",
        "7.2.2",
    )
    rep.claim(
        "check=True raises CalledProcessError with returncode and stderr",
        "holds" if failed.get("raised") == "CalledProcessError" else "wrong",
        str(failed),
        "7.2.4",
    )
    spread = flushed[-1][1] - flushed[0][1] if flushed else 0.0
    burst = buffered[-1][1] - buffered[0][1] if buffered else 0.0
    rep.claim(
        "Popen can read a child's output line by line in real time",
        "holds" if spread >= 3 * gap else "wrong",
        f"lines flushed by the child arrived over {spread * 1000:.0f} ms ({gap * 1000:.0f} ms apart)",
        "7.2.3",
    )
    live = spread >= 3 * gap
    rep.claim(
        "bufsize=1 (line buffering) with a child that flushes (the chapter's setup) gives real-time output",
        "holds" if live else "wrong",
        f"the flushing child's lines arrived one by one over {spread * 1000:.0f} ms, {gap * 1000:.0f} ms apart"
        if live
        else f"the flushing child's lines all arrived within {spread * 1000:.0f} ms",
        "7.2.3",
    )
    rep.edge(
        "bufsize=1 alone makes the output real-time (child without flush)",
        "wrong" if burst < gap else "holds",
        f"bufsize=1 buffers only the parent's side: a child that does not flush wrote all 5 lines at exit "
        f"(arrivals spread over {burst * 1000:.0f} ms); the chapter's child flushes, which is what it takes "
        "(or python -u)"
        if burst < gap
        else f"even without flush the lines arrived over {burst * 1000:.0f} ms",
        "7.2.3",
    )
    want = ["Hello from interactive Python!", "x + y = 30", "sqrt(100) = 10.0"]
    rep.claim(
        "an interactive interpreter can be driven through stdin",
        "holds" if all(w in inter for w in want) else "wrong",
        f"stdout had {inter} (prompts go to stderr); works without a terminal",
        "7.2.3",
    )
    rep.claim(
        "a Popen child nobody waits for becomes a zombie",
        "holds" if zombie[0] == "zombie" else "wrong",
        f"{zombie[0]!r} until poll()/wait(), then {zombie[1]!r}",
        "7.2.1",
    )
    own = tree["chapter_code"]
    ended = own["run_raised"] and own["popen_raised"] and own["returncode"] == -9 and own["after_kill_s"] < 2
    rep.claim(
        "on timeout, kill() ends the command (the chapter's run(timeout) and Popen communicate/kill/communicate)",
        "holds" if ended else "wrong",
        f"run(timeout={own['timeout']}) raised TimeoutExpired after {own['run_s']:.2f} s; the chapter's Popen child "
        f"was killed (returncode {own['returncode']}) and communicate() returned {own['after_kill_s'] * 1000:.0f} ms "
        f"after kill() with {own['lines']} line(s) of its output"
        if ended
        else f"chapter's code: {own}",
        "7.2.4",
    )
    run_t = tree.get("run_timeout", {})
    pop = tree.get("chapter_popen", {})
    left = run_t.get("grandchild_status") not in ("gone", "zombie", None)
    rep.edge(
        "on timeout, kill() also ends a command that started a child of its own",
        "wrong" if left or pop.get("communicate_blocked") else "holds",
        f"run(timeout) killed only the child: its child was {run_t.get('grandchild_status')!r}; with the "
        f"chapter's "
        f"Popen pattern communicate() after kill() blocked: {pop.get('communicate_blocked')} (the orphan "
        f"holds the "
        f"pipe); start_new_session + os.killpg left the grandchild {tree['killpg']['grandchild_status']!r}",
        "7.2.4",
    )
