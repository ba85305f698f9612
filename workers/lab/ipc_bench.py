"""One measuring harness for every IPC mechanism of sections 6.4 and 6.6: same payloads, same protocol.

A `Channel` is one direction-pair between the parent and a child: Pipe, Queue, SimpleQueue, a Manager
queue, Value/Array shared memory (signalled with two semaphores), a socketpair, or a Redis list over
TCP. `measure()` starts a child that either echoes every message (round-trip latency) or swallows n
messages and acknowledges once (one-way throughput), and times it from the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from workers.proclife import reaped

KINDS: tuple[str, ...] = ("pipe", "queue", "simplequeue", "value", "manager", "socket", "redis")
"""Mechanisms, in the order the IPC table lists them."""


@dataclass
class End:
    """One process's side of a channel: send/recv whole byte strings."""

    kind: str
    tx: Any
    rx: Any
    url: str = ""
    _client: Any = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None  # never a Redis client across a process boundary: rebuilt from the URL
        return state

    def redis(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url)
        return self._client

    def send(self, data: bytes) -> None:
        kind = self.kind
        if kind == "pipe":
            self.tx.send_bytes(data)
        elif kind in ("queue", "simplequeue", "manager"):
            self.tx.put(data)
        elif kind == "socket":
            self.tx.sendall(struct.pack("!I", len(data)) + data)
        elif kind == "value":
            array, length, free, ready = self.tx
            free.acquire()
            length.value = len(data)
            ctypes.memmove(array, data, len(data))
            ready.release()
        elif kind == "redis":
            self.redis().lpush(self.tx, data)

    def recv(self) -> bytes:
        kind = self.kind
        if kind == "pipe":
            return bytes(self.rx.recv_bytes())
        if kind in ("queue", "simplequeue", "manager"):
            return bytes(self.rx.get())
        if kind == "socket":
            (n,) = struct.unpack("!I", _recv_exact(self.rx, 4))
            return _recv_exact(self.rx, n)
        if kind == "value":
            array, length, free, ready = self.rx
            ready.acquire()
            data = ctypes.string_at(array, length.value)
            free.release()
            return data
        if kind == "redis":
            got = self.redis().brpop([self.rx], timeout=30)
            if got is None:
                raise TimeoutError("no message on the Redis list within 30 s")
            return bytes(got[1])
        raise ValueError(kind)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("socket closed")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _slot(ctx: Any, size: int) -> tuple[Any, Any, Any, Any]:
    return (
        ctx.Array("c", max(size, 1), lock=False),
        ctx.Value("i", 0, lock=False),
        ctx.Semaphore(1),
        ctx.Semaphore(0),
    )


@contextlib.contextmanager
def channel(ctx: Any, kind: str, size: int, redis_url: str | None = None) -> Iterator[tuple[End, End]]:
    """(parent end, child end) of a fresh channel of `kind`; everything it started is stopped after."""
    manager = None
    keys: list[str] = []
    try:
        if kind == "pipe":
            a, b = ctx.Pipe()
            yield End(kind, a, a), End(kind, b, b)
        elif kind in ("queue", "simplequeue"):
            make = ctx.Queue if kind == "queue" else ctx.SimpleQueue
            req, resp = make(), make()
            yield End(kind, req, resp), End(kind, resp, req)
            for q in (req, resp):
                q.close()
                if kind == "queue":
                    q.join_thread()
        elif kind == "manager":
            manager = ctx.Manager()
            req, resp = manager.Queue(), manager.Queue()
            yield End(kind, req, resp), End(kind, resp, req)
        elif kind == "socket":
            a, b = socket.socketpair()
            with a, b:
                yield End(kind, a, a), End(kind, b, b)
        elif kind == "value":
            to_child, to_parent = _slot(ctx, size), _slot(ctx, size)
            yield End(kind, to_child, to_parent), End(kind, to_parent, to_child)
        elif kind == "redis":
            if not redis_url:
                raise ValueError("the redis channel needs a Redis URL")
            tag = uuid.uuid4().hex[:8]
            keys = [f"mplab:lab:ipc:{tag}:req", f"mplab:lab:ipc:{tag}:resp"]
            parent = End(kind, keys[0], keys[1], redis_url)
            try:
                yield parent, End(kind, keys[1], keys[0], redis_url)
            finally:
                parent.redis().delete(*keys)
                parent.close()
        else:
            raise ValueError(f"unknown IPC kind {kind!r}")
    finally:
        if manager is not None:
            manager.shutdown()


def _serve(end: End, mode: str, n: int) -> None:
    """Child: echo n messages back, or swallow n and acknowledge once."""
    try:
        end.send(end.recv())  # warm-up round trip: both sides are up before timing starts
        if mode == "echo":
            for _ in range(n):
                end.send(end.recv())
        else:
            for _ in range(n):
                end.recv()
            end.send(b"ok")
    finally:
        end.close()


def measure(ctx: Any, kind: str, size: int, n: int, mode: str, redis_url: str | None = None) -> float:
    """Seconds per message: per round trip ('echo') or per one-way message ('sink'); one warm-up each."""
    payload = os.urandom(size)
    with channel(ctx, kind, size, redis_url) as (parent, child):
        proc = ctx.Process(target=_serve, args=(child, mode, n), name=f"ipc-{kind}")
        proc.start()
        with contextlib.closing(parent), reaped(proc, timeout=30):
            parent.send(payload)
            parent.recv()
            if mode == "echo":
                start = time.perf_counter()
                for _ in range(n):
                    parent.send(payload)
                    parent.recv()
            else:
                start = time.perf_counter()
                for _ in range(n):
                    parent.send(payload)
                parent.recv()
            elapsed = time.perf_counter() - start
    return elapsed / max(n, 1)


def echo_check(ctx: Any, kind: str, n: int, redis_url: str | None = None) -> int:
    """How many of n distinct messages a child echoed back unchanged, in order, over a channel of `kind`."""
    messages = [f"message {i} ".encode() + os.urandom(16) for i in range(n)]
    matched = 0
    with channel(ctx, kind, 64, redis_url) as (parent, child):
        proc = ctx.Process(target=_serve, args=(child, "echo", n), name=f"ipc-check-{kind}")
        proc.start()
        with contextlib.closing(parent), reaped(proc, timeout=30):
            parent.send(b"warm-up")
            parent.recv()
            for msg in messages:
                parent.send(msg)
                matched += parent.recv() == msg
    return matched
