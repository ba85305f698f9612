"""Chaos: Redis killed -9 under busy nodes and restarted on the same port and password (its append-only
file keeps what it had acknowledged); a node whose Redis stays away stops after --redis-timeout.

`redis_url` is overridden here: the `nodes` fixture then starts nodes against this module's own
redis-server, which the tests kill.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer

from tasks import batch, cpu
from tests.chaos_tools import SIZE, assert_gone, assert_one_result_each, finished_once, tree, wait_until
from workers.proclife import die_with_parent
from workers.redis_server import find_redis_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class OwnRedis:
    """A redis-server this test kills -9 and restarts on the same port and password, keeping its data."""

    def __init__(self, workdir: Path) -> None:
        self.binary, _ = find_redis_server()
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.password = secrets.token_hex(8)
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--requirepass", self.password,
                "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", str(self.workdir)]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)
        with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as probe:
            wait_until(lambda: self._ping(probe), timeout=10, what="redis-server up")

    @staticmethod
    def _ping(probe: redis.Redis) -> bool:
        with contextlib.suppress(redis.RedisError):
            return bool(probe.ping())
        return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_url(own_redis):
    """The nodes of this module run against its own, killable redis-server."""
    return own_redis.url


def test_redis_killed_for_10s_while_both_nodes_are_busy(own_redis, nodes):
    client = redis.Redis.from_url(own_redis.url)
    try:
        n1, n2 = nodes.start("n1", pool=2), nodes.start("n2", pool=2)
        q = Queue("default", connection=client, serializer=JSONSerializer)
        singles = [q.enqueue(cpu.sum_squares, SIZE * 6).id for _ in range(6)]
        batches = [q.enqueue(batch.run_batch, "tasks.cpu.sum_squares", [[SIZE]] * 8, 1).id for _ in range(2)]
        registry = q.started_job_registry
        wait_until(lambda: len(registry.get_job_ids(cleanup=False)) == 4, what="all four slots busy")
        own_redis.kill()
        time.sleep(10)
        own_redis.start()
        back = time.monotonic()
        probe = q.enqueue(cpu.sum_squares, 10)
        wait_until(lambda: finished_once(client, [*singles, *batches, probe.id]), timeout=90, what="all done")
        assert time.monotonic() - back < 60
        assert_one_result_each(client, singles, SIZE * 6)
        assert_one_result_each(client, batches)
        assert n1.poll() is None and n2.poll() is None  # both nodes rode the outage out
        late = q.enqueue(cpu.sum_squares, 10)  # and take jobs again at once (issue 8: <= 5 s)
        wait_until(lambda: late.get_status(refresh=True) == JobStatus.FINISHED, timeout=15)
        for name in ("n1", "n2"):
            # the node's own loop notices at its next heartbeat, which redis-py's retry back-off during the
            # outage can delay by a few seconds; the slots did not wait for it (the jobs above are done)
            wait_until(lambda n=name: "Redis is back" in nodes.log(n), timeout=20, what=f"{name} saw Redis back")
            log = nodes.log(name)
            assert "unhandled exception" not in log and "Traceback" not in log, log[-3000:]
            assert "died" not in log, log[-3000:]
            assert "Redis unreachable" in log, log[-3000:]  # it did span the outage
        children = tree(n1) + tree(n2)
        n1.send_signal(signal.SIGTERM)
        n2.send_signal(signal.SIGTERM)
        assert n1.wait(timeout=30) == 0 and n2.wait(timeout=30) == 0
        assert_gone(children, timeout=5)
    finally:
        client.close()


def test_a_node_stops_with_one_line_and_exit_1_after_its_redis_timeout(own_redis, nodes):
    node = nodes.start("n1", "--redis-timeout", "2", pool=1)
    children = tree(node)
    own_redis.kill()
    assert node.wait(timeout=30) == 1
    last = nodes.log("n1").strip().splitlines()[-1]
    assert "unreachable for" in last and "--redis-timeout 2" in last and own_redis.password not in last, last
    assert_gone(children, timeout=5)
