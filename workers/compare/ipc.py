"""IPC round trips for `mplab compare`: Pipe, Queue and Redis (the network hop), 100-byte messages."""

from __future__ import annotations

import time
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from statistics import median
from typing import Any

import redis

from workers.compare.local import quiet_child

MESSAGE = b"x" * 100


def _echo_pipe(conn: Connection) -> None:
    quiet_child()
    while True:
        data = conn.recv_bytes()
        if not data:
            break
        conn.send_bytes(data)


def _echo_queue(inbox: Any, outbox: Any) -> None:
    quiet_child()
    while True:
        data = inbox.get()
        if data is None:
            break
        outbox.put(data)


def _echo_redis(url: str, inbox: str, outbox: str) -> None:
    quiet_child()
    client = redis.Redis.from_url(url)
    while True:
        _key, data = client.blpop([inbox])  # type: ignore[misc]
        if data == b"":
            break
        client.rpush(outbox, data)


def _time_round_trips(send: Any, recv: Any, rounds: int) -> float:
    samples = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(rounds):
            send(MESSAGE)
            recv()
        samples.append((time.perf_counter() - t0) / rounds)
    return median(samples)


def round_trips(ctx: BaseContext, url: str, rounds: int) -> list[dict[str, Any]]:
    """Median round-trip time of a 100-byte message to an echo process, per channel."""
    rows: list[dict[str, Any]] = []
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_echo_pipe, args=(theirs,))  # type: ignore[attr-defined]
    proc.start()
    try:
        rtt = _time_round_trips(ours.send_bytes, ours.recv_bytes, rounds)
    finally:
        ours.send_bytes(b"")
        proc.join()
    rows.append({"channel": "Pipe", "rtt_us": rtt * 1e6})

    inbox, outbox = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=_echo_queue, args=(inbox, outbox))  # type: ignore[attr-defined]
    proc.start()
    try:
        rtt = _time_round_trips(inbox.put, outbox.get, rounds)
    finally:
        inbox.put(None)
        proc.join()
        for q in (inbox, outbox):
            q.close()
            q.join_thread()
    rows.append({"channel": "Queue", "rtt_us": rtt * 1e6})

    client = redis.Redis.from_url(url)
    box = f"mplab:ipc:{time.time_ns()}"
    proc = ctx.Process(target=_echo_redis, args=(url, box + ":in", box + ":out"))  # type: ignore[attr-defined]
    proc.start()
    try:
        rtt = _time_round_trips(
            lambda m: client.rpush(box + ":in", m), lambda: client.blpop([box + ":out"]), max(rounds // 4, 50)
        )
    finally:
        client.rpush(box + ":in", b"")
        proc.join()
        client.delete(box + ":in", box + ":out")
        client.close()
    rows.append({"channel": "Redis list over TCP", "rtt_us": rtt * 1e6})
    for row in rows:
        row["msgs_per_s_one_at_a_time"] = 1e6 / row["rtt_us"]
    return rows
