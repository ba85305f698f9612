"""The latency proxy: delay per direction, delay changes on open connections, round-trip counting, loopback only."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
import redis

from workers.errors import ConfigError
from workers.netproxy import LatencyProxy, check_rtt


@pytest.fixture
def stamping_echo() -> Iterator[tuple[int, list[float]]]:
    """A TCP server that records when each message arrives and echoes it at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    arrivals: list[float] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(4096):
                arrivals.append(time.monotonic())
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], arrivals
    if thread.is_alive():  # still in accept() if the test never connected: closing would not wake it
        with contextlib.suppress(OSError):
            socket.create_connection(listener.getsockname(), timeout=1).close()
    listener.close()
    thread.join(timeout=5)
    assert not thread.is_alive()


def _exchange(sock: socket.socket, arrivals: list[float], payload: bytes) -> tuple[float, float]:
    """(client -> server, server -> client) delivery times of one message, in seconds."""
    before = len(arrivals)
    sent = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        got += sock.recv(4096)
    back = time.monotonic()
    assert got == payload
    assert len(arrivals) == before + 1
    return arrivals[-1] - sent, back - arrivals[-1]


def test_delay_is_applied_in_each_direction_and_can_change_on_an_open_connection(stamping_echo) -> None:
    port, arrivals = stamping_echo
    with LatencyProxy("127.0.0.1", port, rtt_ms=120) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
            up, down = _exchange(sock, arrivals, b"x" * 100)
            assert up >= 0.055 and down >= 0.055  # half of 120 ms each way (a sleep never ends early)
            proxy.set_rtt(300)
            up, down = _exchange(sock, arrivals, b"y" * 100)
            assert up >= 0.145 and down >= 0.145  # the same connection, now 150 ms each way
            proxy.set_rtt(0)
            _exchange(sock, arrivals, b"z" * 100)  # still works after the change
        assert proxy.stats().connections == 1


def _resp(*args: str) -> bytes:
    """A command as RESP puts it on the wire (an array of bulk strings)."""
    return f"*{len(args)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in args)


def test_round_trips_count_bursts_not_commands(redis_url: str) -> None:
    with LatencyProxy.for_url(redis_url) as proxy:
        client = redis.Redis.from_url(proxy.url(redis_url))
        client.ping()  # connection set-up (AUTH, CLIENT SETINFO...) happens here
        proxy.reset()
        for _ in range(10):
            client.ping()
        assert proxy.stats().round_trips == 10
        with client.pipeline(transaction=False) as pipe:
            for i in range(50):
                pipe.set(f"k{i}", i)
            pipe.execute()
        stats = proxy.stats()
        assert stats.round_trips == 11  # 50 pipelined commands: one round trip
        # every byte counted once, each way: the RESP commands sent and the replies (+PONG, +OK) received
        sent = 10 * len(_resp("PING")) + sum(len(_resp("SET", f"k{i}", str(i))) for i in range(50))
        assert (stats.client_bytes, stats.server_bytes) == (sent, 10 * len(b"+PONG\r\n") + 50 * len(b"+OK\r\n"))
        client.close()


def test_listens_and_forwards_on_loopback_only(stamping_echo) -> None:
    port, _ = stamping_echo
    with pytest.raises(ConfigError, match="loopback"):
        LatencyProxy("10.213.7.1", port)
    with LatencyProxy("127.0.0.1", port) as proxy:
        assert proxy.pid is not None
        listening = [
            c.laddr for c in psutil.Process(proxy.pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN
        ]
        assert [a.ip for a in listening] == ["127.0.0.1"]
        assert [a.port for a in listening] == [proxy.port]


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, 1e6])
def test_rtt_must_be_finite_and_bounded(bad: float) -> None:
    with pytest.raises(ConfigError):
        check_rtt(bad)


def test_url_goes_through_the_proxy_with_the_same_credentials(stamping_echo) -> None:
    port, _ = stamping_echo
    with LatencyProxy("127.0.0.1", port) as proxy:
        assert proxy.url("redis://:pw@127.0.0.1:6379/3") == f"redis://:pw@127.0.0.1:{proxy.port}/3"
        assert proxy.url("redis://localhost/0") == f"redis://127.0.0.1:{proxy.port}/0"
