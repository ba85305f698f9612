"""Processes started as commands (worker nodes, stock rq workers): start with the Redis URL in the
environment, never in argv; stop all at once within a bound; kill whatever is left of their trees.
Used by `mplab compare` and `workers.netcost`."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from workers import proclife


def spawn(
    cmd: list[str], env: dict[str, str], log: Path | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` (in `cwd`) with `env` added to ours; the Redis URL (and its password) travels in `env` only."""
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            preexec_fn=proclife.die_with_parent,
            cwd=cwd,
        )
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def stop(procs: Iterable[subprocess.Popen[bytes]], grace: float, twice: bool = False) -> None:
    """SIGTERM every process (`twice`: a second SIGTERM, which nodes and rq workers take as "stop now"),
    wait up to `grace` seconds for all, then SIGKILL what is left of each tree."""
    procs = list(procs)
    trees: dict[int, list[psutil.Process]] = {}
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            trees[proc.pid] = psutil.Process(proc.pid).children(recursive=True)
    for _ in range(2 if twice else 1):
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
        if twice:
            time.sleep(0.05)
    deadline = time.monotonic() + grace
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    left: list[psutil.Process] = []
    for proc in procs:  # kill everything still there first, then wait once for all of it
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        left += [p for p in trees.get(proc.pid, []) if _alive(p)]
    for child in left:
        with contextlib.suppress(psutil.Error):
            child.kill()
    for proc in procs:
        proc.wait()
    psutil.wait_procs(left, timeout=1)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS sum, PSS sum) of a process and its descendants; PSS counts copy-on-write shared pages once."""
    rss = pss = 0
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    for proc in tree:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", 0)
    return rss, pss


def wait_quiet(pids: list[int], timeout: float, threshold: float = 10.0) -> None:
    """Wait until the trees of `pids` use < `threshold` % CPU (start-up done), at most `timeout` s."""
    deadline = time.monotonic() + timeout
    procs: dict[int, psutil.Process] = {}
    while time.monotonic() < deadline:
        current = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                root = psutil.Process(pid)
                current += [root, *root.children(recursive=True)]
        for p in current:
            procs.setdefault(p.pid, p)
            with contextlib.suppress(psutil.Error):
                procs[p.pid].cpu_percent(None)
        time.sleep(0.25)
        busy = 0.0
        for p in current:
            with contextlib.suppress(psutil.Error):
                busy += procs[p.pid].cpu_percent(None)
        if busy < threshold:
            return
