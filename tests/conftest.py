"""Shared fixtures: clean environment, no leftover processes, fake and real Redis, worker nodes."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import psutil
import pytest
import redis

from tests.node_tools import Nodes
from workers.redis_server import embedded_redis

ENV_PREFIXES = ("MPLAB_", "REDIS_URL", "RQ_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never see the developer's REDIS_URL/MPLAB_* nor a `mplab redis up` state file."""
    for key in list(os.environ):
        if key.startswith(ENV_PREFIXES):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MPLAB_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def no_leftover_children() -> Iterator[None]:
    """Fail any test that leaves a child process (zombies included) behind; then clean them up."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 10
    leftovers: list[psutil.Process] = []
    while time.monotonic() < deadline:
        leftovers = [p for p in me.children(recursive=True) if p.pid not in before]
        if not leftovers:
            return
        time.sleep(0.05)
    described = []
    for proc in leftovers:
        try:
            described.append(f"{proc.pid} {proc.status()} {proc.name()}")
            proc.kill()
        except psutil.Error:
            described.append(f"{proc.pid} (gone)")
        if described[-1].split()[1] == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
    psutil.wait_procs(leftovers, timeout=5)
    pytest.fail(f"test left {len(leftovers)} child process(es) behind: {described}")


@pytest.fixture
def fake_redis() -> Iterator[fakeredis.FakeRedis]:
    """In-memory Redis for unit tests (never with a forking worker)."""
    server = fakeredis.FakeServer()
    client = fakeredis.FakeRedis(server=server)
    yield client
    client.flushall()


@pytest.fixture(scope="session")
def _real_redis_server() -> Iterator[str]:
    with embedded_redis() as server:
        yield server.url


@pytest.fixture
def redis_url(_real_redis_server: str) -> Iterator[str]:
    """URL of a real embedded redis-server, flushed before and after the test."""
    client = redis.Redis.from_url(_real_redis_server)
    client.flushall()
    yield _real_redis_server
    client.flushall()
    client.close()


@pytest.fixture
def real_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def nodes(redis_url: str, tmp_path: Path) -> Iterator[Nodes]:
    """Factory for real worker node processes against the real Redis; all stopped after the test."""
    factory = Nodes(redis_url, tmp_path)
    yield factory
    factory.stop_all()
