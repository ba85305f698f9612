"""A real redis-server a test can kill -9 and start again on the same port, password and data (AOF)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis

from workers import redis_server


class RestartableRedis:
    """Started in `workdir`; `kill()` is a SIGKILL, `start()` brings it back with everything it had."""

    def __init__(self, workdir: Path) -> None:
        self.binary, _ = redis_server.find_redis_server()
        self.workdir = workdir
        self.port = redis_server._free_port()
        self.password = "pw" + os.urandom(4).hex()
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RestartableRedis:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
                "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.workdir),
                "--daemonize", "no"]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.3) as probe:
                    probe.ping()
                return self
            except (redis.ConnectionError, redis.TimeoutError):
                time.sleep(0.05)
        self.kill()
        raise AssertionError("redis-server did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
