"""Section 6.6: the chapter's IPC comparison table, measured instead of described by adjectives."""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
import time
from typing import Any
from urllib.parse import urlparse

import psutil

from workers.errors import LabError
from workers.lab.base import Lab, experiment, median
from workers.lab.ipc_bench import KINDS, echo_check, measure

CHAPTER: dict[str, str] = {
    "queue": "中 (medium)",
    "pipe": "高 (high)",
    "manager": "低 (low)",
    "socket": "高 (high)",
    "lock": "中 (medium)",
}
"""The chapter's 6.6 '性能' (performance) column; SimpleQueue and Value/Array are not rated there."""

LABELS: dict[str, str] = {
    "pipe": "Pipe",
    "queue": "Queue",
    "simplequeue": "SimpleQueue",
    "value": "Value/Array (+2 semaphores)",
    "manager": "Manager().Queue",
    "socket": "socketpair (AF_UNIX)",
    "redis": "Redis list over TCP (network)",
}


def _kind_of_fd(fd: int) -> str:
    mode = os.fstat(fd).st_mode
    return "socket" if stat.S_ISSOCK(mode) else "pipe (FIFO)" if stat.S_ISFIFO(mode) else "other"


@experiment(
    "ipc-table",
    "6.6",
    "the IPC table measured: Queue, SimpleQueue, Pipe, Value/Array, Manager, socket, Redis over TCP",
    params={"rtt_n": 300, "small_n": 3000, "big_n": 10, "repeats": 3, "redis": True},
    limits={"rtt_n": (10, 100_000), "small_n": (10, 1_000_000), "big_n": (1, 1000), "repeats": (1, 20)},
    param_help={
        "rtt_n": "round trips per repetition",
        "small_n": "100-byte one-way messages per repetition",
        "big_n": "1 MiB one-way messages per repetition",
        "repeats": "repetitions (median reported)",
        "redis": "include the Redis-over-TCP row (embedded redis-server unless --redis-url)",
    },
)
def ipc_table(lab: Lab) -> None:
    rep = lab.report
    if lab.p("redis"):
        from workers.redis_server import redis_for

        try:
            with redis_for(lab.settings.redis_url, lab.settings.state_dir) as (url, where):
                rep.event(f"network row: {where}")
                rows = _rows(lab, url)
                net = _network_check(lab, url)
        except LabError as exc:
            rep.event(f"no Redis for the network row: {exc}")
            rows, net = _rows(lab, None), None
    else:
        rows, net = _rows(lab, None), None
    rows.append(_lock_row(lab))
    rep.measure("table", rows)
    rep.measure("method", lab.method)
    rep.measure("network_check", net)
    _verdicts(lab, {r["kind"]: r for r in rows}, net)


def _rows(lab: Lab, url: str | None) -> list[dict[str, Any]]:
    rep, ctx = lab.report, lab.ctx()
    reps = max(1, int(lab.p("repeats")))
    rows = []
    for kind in KINDS:
        if kind == "redis" and not url:
            continue
        t0 = time.perf_counter()
        rtt = median([measure(ctx, kind, 100, int(lab.p("rtt_n")), "echo", url) for _ in range(reps)])
        small = median([measure(ctx, kind, 100, int(lab.p("small_n")), "sink", url) for _ in range(reps)])
        big = median([measure(ctx, kind, 1 << 20, int(lab.p("big_n")), "sink", url) for _ in range(reps)])
        rows.append(
            {
                "kind": kind,
                "mechanism": LABELS[kind],
                "chapter_performance": CHAPTER.get(kind, "-"),
                "rtt_us": round(rtt * 1e6, 1),
                "msgs_per_s_100B": round(1 / small),
                "MiB_per_s": round(1 / big, 1),
            }
        )
        rep.event(
            f"{LABELS[kind]:30} round trip {rtt * 1e6:8.1f} µs | {1 / small:>10,.0f} msgs/s of 100 B | "
            f"{1 / big:8,.1f} MiB/s ({time.perf_counter() - t0:.2f} s)"
        )
    return rows


def _lock_row(lab: Lab) -> dict[str, Any]:
    lock = lab.ctx().Lock()
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        lock.acquire()
        lock.release()
    each = (time.perf_counter() - start) / n
    lab.report.event(f"{'Lock (uncontended acquire+release)':30} {each * 1e6:8.2f} µs per pair")
    return {
        "kind": "lock",
        "mechanism": "Lock (acquire+release, uncontended)",
        "chapter_performance": CHAPTER["lock"],
        "rtt_us": round(each * 1e6, 2),
        "msgs_per_s_100B": None,
        "MiB_per_s": None,
    }


def _verdicts(lab: Lab, rows: dict[str, dict[str, Any]], net: dict[str, Any] | None) -> None:
    rep, ctx = lab.report, lab.ctx()
    rtt = {k: r["rtt_us"] for k, r in rows.items() if k != "lock"}
    rep.claim(
        "Pipe performs better (高) than Queue (中)",
        "holds" if rtt["pipe"] < rtt["queue"] else "wrong",
        f"round trip Pipe {rtt['pipe']} µs vs Queue {rtt['queue']} µs; 1 MiB: {rows['pipe']['MiB_per_s']} vs "
        f"{rows['queue']['MiB_per_s']} MiB/s (start method {lab.method})",
    )
    in_host = {k: v for k, v in rtt.items() if k not in ("manager", "redis")}
    slowest = rtt["manager"] > max(in_host.values())
    rep.claim(
        "Manager is the slowest (低) way to share data in-host",
        "holds" if slowest else "wrong",
        f"Manager round trip {rtt['manager']} µs vs {', '.join(f'{k} {v}' for k, v in in_host.items())} µs "
        f"(every access is a request to the manager's server process)",
    )
    rep.claim(
        "sockets perform well (高)",
        "holds" if rtt["socket"] <= 1.5 * rtt["pipe"] else "wrong",
        f"socketpair round trip {rtt['socket']} µs vs Pipe {rtt['pipe']} µs; "
        f"{rows['socket']['msgs_per_s_100B']:,} msgs/s of 100 B",
    )
    _network_claims(lab, rows, net)
    a, b = ctx.Pipe()
    q = ctx.Queue()
    kinds = {"Pipe()": _kind_of_fd(a.fileno()), "Queue": _kind_of_fd(q._reader.fileno())}
    a.close()
    b.close()
    q.close()
    q.join_thread()
    shared = ctx.Value("i", 0)
    writer = ctx.Process(target=_poke, args=(shared,))
    writer.start()
    writer.join()
    rep.event(
        f"file descriptors: Pipe() is a {kinds['Pipe()']}, Queue reads from a {kinds['Queue']}; "
        f"a child's write to a Value is seen by the parent: {shared.value == 42}"
    )
    rep.claim(
        "Queue, Pipe, Value/Array and Manager are all 'shared memory' (内存共享类)",
        "wrong" if shared.value == 42 and "other" not in kinds.values() else "not-measured",
        f"only Value/Array are shared memory (a child's write was visible in the parent without sending); "
        f"Pipe "
        f"is a {kinds['Pipe()']}, Queue a {kinds['Queue']} plus a feeder thread, Manager a server process: "
        f"all "
        "message passing that pickles and copies",
    )


NETWORK_CHECK_N = 20
"""Distinct messages echoed over Redis to check that the network row really carried them."""


def _is_local_host(host: str | None) -> bool:
    """True when `host` (of a Redis URL) is this machine: a unix socket, loopback, or one of our addresses."""
    if not host:
        return True  # unix socket
    try:
        addresses = {str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    ours = {addr.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for addr in addrs}
    return all(ipaddress.ip_address(a).is_loopback or a in ours for a in addresses)


def _network_check(lab: Lab, url: str) -> dict[str, Any]:
    """Echo NETWORK_CHECK_N distinct messages through Redis to a child; where the Redis server is."""
    parsed = urlparse(url)
    host = parsed.hostname if parsed.scheme in ("redis", "rediss") else None
    matched = echo_check(lab.ctx(), "redis", NETWORK_CHECK_N, url)
    local = _is_local_host(host)
    lab.report.event(
        f"Redis at {host or 'a unix socket'} ({'this machine' if local else 'another machine'}): a child echoed "
        f"{matched} of {NETWORK_CHECK_N} distinct messages back unchanged"
    )
    return {"host": host, "local": local, "sent": NETWORK_CHECK_N, "echoed_intact": matched}


def _network_claims(lab: Lab, rows: dict[str, dict[str, Any]], net: dict[str, Any] | None) -> None:
    rep = lab.report
    across = "sockets carry communication across machines"
    carries = "a network socket (Redis over TCP) carries messages between processes"
    if net is None or "redis" not in rows:
        rep.claim(carries, "not-measured", "no Redis for the network row")
        rep.claim(across, "not-measured", "no Redis for the network row")
        return
    intact = net["echoed_intact"] == net["sent"]
    redis_rtt, pipe_rtt = rows["redis"]["rtt_us"], rows["pipe"]["rtt_us"]
    rep.claim(
        carries,
        "holds" if intact else "wrong",
        f"a child echoed {net['echoed_intact']} of {net['sent']} distinct messages back unchanged through Redis "
        f"at {net['host'] or 'a unix socket'}; round trip {redis_rtt} µs = {redis_rtt / pipe_rtt:.1f}x a Pipe, "
        f"{rows['redis']['msgs_per_s_100B']:,} msgs/s of 100 B one per call (BASELINES.md: 142-169 µs)",
    )
    if net["local"]:
        rep.claim(
            across,
            "not-measured",
            f"the Redis server is on this machine ({net['host'] or 'unix socket'}): loopback shows nothing about "
            "other machines; give --redis-url of a Redis on another host to measure it",
        )
    else:
        rep.claim(
            across,
            "holds" if intact else "wrong",
            f"Redis at {net['host']} is not an address of this machine; {net['echoed_intact']} of {net['sent']} "
            f"messages came back intact, round trip {redis_rtt} µs",
        )


def _poke(shared: Any) -> None:
    shared.value = 42
