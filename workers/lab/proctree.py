"""Process-tree tools for the subprocess experiment: a child that spawns a grandchild, and ways to end both."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

from workers.lab.base import kill_and_forget, wait_status

SPAWNS_GRANDCHILD = (
    "import subprocess,sys\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import sys; sys.stdin.read()'])\n"
    "print(p.pid, flush=True)\n"
    "sys.stdin.read()\n"
)
"""A child that starts a grandchild, prints the grandchild's pid, then waits. Both wait for EOF on the
stdin they share, so neither ends by itself: the lab ends them by closing the pipe's write end (and
by killing their process group)."""


def text_of(data: Any) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else str(data or "")


def kill_tree_on_timeout(
    cmd: list[str], timeout: float, *, stdin: int | None = None, first_line: bool = False
) -> dict[str, Any]:
    """Run `cmd` in its own session; on timeout SIGKILL the whole process group (child and its children).

    With `first_line`, the child's first output line is read before the timeout clock starts (a pid it
    reports, say). Whatever happens, the group is killed before this returns.
    """
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, bufsize=0, start_new_session=True)
    assert proc.stdout is not None
    try:
        head = text_of(proc.stdout.readline()) if first_line else ""
        try:
            out, _ = proc.communicate(timeout=timeout)
            return {"timed_out": False, "first_line": head, "stdout": head + text_of(out), "pid": proc.pid}
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            return {
                "timed_out": True,
                "first_line": head,
                "stdout": head + text_of(exc.stdout) + text_of(out),
                "pid": proc.pid,
            }
    finally:
        _killpg(proc.pid)
        proc.stdout.close()
        proc.wait()


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class ProcessTree:
    """The stdin pipe of a SPAWNS_GRANDCHILD tree, and every process group and pid of it seen.

    `end()` closes the write end (the tree's processes read EOF and exit), SIGKILLs the groups, and
    waits until the pids it knows are zombies or gone.
    """

    def __init__(self) -> None:
        self.stdin, self._w = os.pipe()
        self.groups: set[int] = set()
        self.pids: set[int] = set()

    def __enter__(self) -> ProcessTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.end()

    def track(self, pid: int) -> None:
        self.pids.add(pid)
        with contextlib.suppress(OSError):
            self.groups.add(os.getpgid(pid))

    def end(self) -> None:
        for fd in (self._w, self.stdin):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._w = self.stdin = -1
        for pgid in self.groups:
            _killpg(pgid)
        for pid in self.pids:
            if wait_status(pid, {"zombie", "gone"}, 5)[0] not in ("zombie", "gone"):
                kill_and_forget(pid)


def parse_pid(text: str) -> int | None:
    words = text.split()
    return int(words[0]) if words and words[0].isdigit() else None


CHAPTER_LONG = "import time; time.sleep(5); print('Done')"
CHAPTER_STEPS = (
    "import time\nprint('Starting long task...')\nfor i in range(10):\n"
    "    print(f'Step {i+1}')\n    time.sleep(1)\nprint('Task completed')"
)


def chapter_timeouts(timeout: float) -> dict[str, Any]:
    """7.2.4 as the chapter wrote it: run(timeout) on a 5 s sleep; Popen, communicate(timeout), kill(), communicate."""
    start = time.perf_counter()
    try:
        subprocess.run([sys.executable, "-c", CHAPTER_LONG], timeout=timeout, capture_output=True, text=True)
        run_raised = False
    except subprocess.TimeoutExpired:
        run_raised = True
    run_s = time.perf_counter() - start
    with subprocess.Popen(
        [sys.executable, "-c", CHAPTER_STEPS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as p:
        try:
            p.communicate(timeout=timeout)
            popen_raised = False
        except subprocess.TimeoutExpired:
            popen_raised = True
        p.kill()
        killed = time.perf_counter()
        out, _ = p.communicate()
        after_kill = time.perf_counter() - killed
    return {
        "timeout": timeout,
        "run_raised": run_raised,
        "run_s": round(run_s, 3),
        "popen_raised": popen_raised,
        "returncode": p.returncode,
        "after_kill_s": round(after_kill, 3),
        "lines": len(out.splitlines()),
    }
