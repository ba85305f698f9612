"""Real `mplab worker` processes for tests, started and stopped the way `mplab compare` does it (`workers.procs`:
the Redis URL in the environment, never in argv; the node dies with the test process; a bounded stop)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import redis

from workers import procs
from workers.heartbeat import node_key

REPO = Path(__file__).resolve().parent.parent


def mplab_cmd(*args: str) -> list[str]:
    """Command line running the `mplab` CLI with this interpreter."""
    return [sys.executable, "-m", "cli", *args]


class Nodes:
    """Starts real `mplab worker` processes (from this checkout) and always stops them."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *extra: str, pool: int = 2, wait: bool = True) -> subprocess.Popen[bytes]:
        cmd = mplab_cmd("worker", "--name", name, "--pool", str(pool), *extra)
        proc = procs.spawn(cmd, {"REDIS_URL": self.url}, self.tmp_path / f"{name}.log", cwd=REPO)
        self.procs.append(proc)
        if wait:
            self.wait_ready(name, pool, proc)
        return proc

    def wait_ready(
        self, name: str, pool: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30
    ) -> None:
        """Until the node's heartbeat shows all its slots; fails at once, with its log, if it exited."""
        deadline = time.monotonic() + timeout
        with redis.Redis.from_url(self.url) as client:
            while client.hget(node_key(name), "slots_total") != str(pool).encode():
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"node {name} exited {proc.returncode} while starting: {self.log(name)}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"node {name} not ready after {timeout:.0f}s: {self.log(name)}")
                time.sleep(0.05)

    def log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop_all(self) -> None:
        """SIGTERM every node, wait for all up to 30 s, then kill what is left of each tree."""
        procs.stop(self.procs, grace=30)
