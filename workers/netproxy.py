"""A latency-injecting TCP proxy on loopback: puts a network between the lab and its Redis, and counts it.

This kernel has no `tc netem`, so latency is injected in user space: every chunk a side sends is held for
half the round-trip time before it is forwarded, in each direction, so a request/reply pair costs one
full RTT more than the direct path. The delay can change while connections stay open.

It also counts *sequential round trips*: per connection, a burst of client bytes that follows a reply
(or opens the connection) is one round trip; a pipeline of many commands sent before the reply is still
one. That is the number that multiplies with RTT, unlike the command count.

The proxy runs in a fresh interpreter of its own (threads there, not in the measuring process: a proxy
thread competing for the measuring process's GIL would bias what it measures). It listens on 127.0.0.1
only and forwards only to a loopback address: it cannot send traffic off this machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

from workers.errors import ConfigError

MAX_RTT_MS = 1000.0
"""Largest round-trip time the proxy accepts, in milliseconds."""

_CHUNK = 65536


@dataclass(frozen=True)
class ProxyStats:
    """Traffic through the proxy since it started (or since the last reset)."""

    connections: int
    """Client connections accepted."""
    round_trips: int
    """Sequential round trips: client bursts that follow a reply or open a connection."""
    client_bytes: int
    """Bytes forwarded from clients to the server."""
    server_bytes: int
    """Bytes forwarded from the server to clients."""


def check_rtt(rtt_ms: float) -> float:
    """A finite round-trip time in [0, MAX_RTT_MS] milliseconds, else ConfigError."""
    if not (0.0 <= rtt_ms <= MAX_RTT_MS):  # also false for NaN
        raise ConfigError(f"round-trip time must be between 0 and {MAX_RTT_MS:g} ms, got {rtt_ms}")
    return float(rtt_ms)


def _check_loopback(host: str) -> str:
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        raise ConfigError(f"proxy target {host!r} does not resolve: {exc}") from None
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise ConfigError(f"the latency proxy forwards only to loopback addresses, not {host!r}")
    return host


class _Counters:
    """Shared by every connection's threads in the proxy process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.half_delay = 0.0
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.connections = self.round_trips = self.client_bytes = self.server_bytes = 0

    def snapshot(self) -> ProxyStats:
        with self.lock:
            return ProxyStats(self.connections, self.round_trips, self.client_bytes, self.server_bytes)


class _Link:
    """One proxied connection: two directions, each a reader thread and a delayed writer thread."""

    def __init__(self, client: socket.socket, server: socket.socket, counters: _Counters) -> None:
        self.client, self.server, self.counters = client, server, counters
        self.awaiting_reply = False  # a client burst after a reply starts a new round trip

    def start(self) -> None:
        for src, dst, upstream in ((self.client, self.server, True), (self.server, self.client, False)):
            pending: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
            threading.Thread(target=self._read, args=(src, pending, upstream), daemon=True).start()
            threading.Thread(target=self._write, args=(dst, pending), daemon=True).start()

    def _read(self, src: socket.socket, pending: queue.SimpleQueue[tuple[float, bytes] | None], up: bool) -> None:
        c = self.counters
        with contextlib.suppress(OSError):
            while data := src.recv(_CHUNK):
                due = time.monotonic() + c.half_delay  # the delay in force when the bytes arrived
                with c.lock:
                    if up:
                        c.client_bytes += len(data)
                        if not self.awaiting_reply:
                            c.round_trips += 1
                            self.awaiting_reply = True
                    else:
                        c.server_bytes += len(data)
                        self.awaiting_reply = False
                pending.put((due, data))
        pending.put(None)

    @staticmethod
    def _write(dst: socket.socket, pending: queue.SimpleQueue[tuple[float, bytes] | None]) -> None:
        try:
            while (item := pending.get()) is not None:
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on, like a real network would
        except OSError:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_RDWR)


def _serve(target: tuple[str, int], rtt_ms: float) -> None:
    """Proxy process: forward until told to stop on stdin (or until stdin closes: the parent is gone).

    Control is one command per line on stdin (`stats`, `reset`, `rtt MS`, `stop`); each is answered
    with one JSON line of counters on stdout.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    counters = _Counters()
    counters.half_delay = rtt_ms / 2000.0
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = listener.accept()
                try:
                    server = socket.create_connection(target, timeout=5)
                except OSError:
                    client.close()
                    continue
                server.settimeout(None)
                for sock in (client, server):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with counters.lock:
                    counters.connections += 1
                _Link(client, server, counters).start()

    threading.Thread(target=accept, daemon=True).start()
    print(json.dumps({"port": listener.getsockname()[1]}), flush=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "stop":
            break
        if command == "rtt":
            counters.half_delay = float(value) / 2000.0
        stats = counters.snapshot()
        if command == "reset":
            counters.reset()
        print(json.dumps(asdict(stats)), flush=True)
    listener.close()
    os._exit(0)  # connection threads are daemons blocked in recv: end them with the process


class LatencyProxy:
    """`with LatencyProxy(host, port, rtt_ms=1) as proxy:` forwards 127.0.0.1:proxy.port to host:port."""

    def __init__(self, host: str, port: int, *, rtt_ms: float = 0.0) -> None:
        self.target = (_check_loopback(host), port)
        self.rtt_ms = check_rtt(rtt_ms)
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @classmethod
    def for_url(cls, url: str, *, rtt_ms: float = 0.0) -> LatencyProxy:
        """A proxy in front of the Redis at `url` (redis:// or rediss:// on a loopback host)."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ConfigError("the latency proxy needs a redis:// URL with a host and port")
        return cls(parts.hostname, parts.port or 6379, rtt_ms=rtt_ms)

    def url(self, url: str) -> str:
        """`url` rewritten to go through this proxy (same credentials, db and options)."""
        parts = urlsplit(url)
        creds = parts.netloc.rpartition("@")[0]
        netloc = f"{creds}@127.0.0.1:{self.port}" if creds else f"127.0.0.1:{self.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def __enter__(self) -> LatencyProxy:
        host, port = self.target
        # A fresh interpreter that imports only this module: no resource tracker, no inherited threads.
        self._process = subprocess.Popen(
            [sys.executable, "-m", "workers.netproxy", host, str(port), repr(self.rtt_ms)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            self.port = int(self._read()["port"])
        except (ConfigError, KeyError, ValueError):
            self.close()
            raise ConfigError("the latency proxy did not start") from None
        return self

    def _read(self) -> dict[str, int]:
        assert self._process is not None and self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            raise ConfigError("the latency proxy exited")
        reply: dict[str, int] = json.loads(line)
        return reply

    def _ask(self, command: str) -> ProxyStats:
        if self._process is None or self._process.stdin is None:
            raise ConfigError("the latency proxy is not running")
        self._process.stdin.write(command + "\n")
        self._process.stdin.flush()
        return ProxyStats(**self._read())

    def set_rtt(self, rtt_ms: float) -> None:
        """Change the added round-trip time; open connections keep working."""
        self.rtt_ms = check_rtt(rtt_ms)
        self._ask(f"rtt {self.rtt_ms!r}")

    def stats(self) -> ProxyStats:
        return self._ask("stats")

    def reset(self) -> ProxyStats:
        """Counters back to zero; returns what they were."""
        return self._ask("reset")

    def close(self) -> None:
        """Stop the proxy process and reap it (idempotent)."""
        proc, self._process = self._process, None
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.write("stop\n")
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


if __name__ == "__main__":
    _serve((_check_loopback(sys.argv[1]), int(sys.argv[2])), check_rtt(float(sys.argv[3])))
