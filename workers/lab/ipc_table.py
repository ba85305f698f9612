"""Section 6.6: the chapter's IPC comparison table, measured instead of described by adjectives."""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import stat
import time
from typing import Any
from urllib.parse import urlparse

import psutil

from workers.lab.base import Lab, experiment, median
from workers.lab.ipc_bench import KINDS, echo_check, measure
from workers.lab.records import IpcRow, NetworkCheck
from workers.lab.verdicts import combined, interleaved, lead, rounds_won, speed_table, speed_verdict, spread

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
    params={"rtt_n": 300, "small_n": 3000, "big_n": 10, "repeats": 5, "redis": True},
    limits={"rtt_n": (10, 100_000), "small_n": (10, 1_000_000), "big_n": (1, 1000), "repeats": (1, 20)},
    param_help={
        "rtt_n": "round trips per repetition",
        "small_n": "100-byte one-way messages per repetition",
        "big_n": "1 MiB one-way messages per repetition",
        "repeats": "rounds, every mechanism measured in turn (median and min-max reported)",
        "redis": "include the Redis-over-TCP row (embedded redis-server unless --redis-url)",
    },
    redis_param="redis",
)
def ipc_table(lab: Lab) -> None:
    rep = lab.report
    url = lab.settings.redis_url if lab.p("redis") else None
    if url:
        from workers.redis_server import redact

        rep.event(f"network row: {lab.redis_note or f'Redis at {redact(url)}'}")
    elif lab.p("redis"):
        rep.event(f"no Redis for the network row: {lab.redis_note or 'no Redis URL given'}")
    rows = _rows(lab, url)
    net = _network_check(lab, url) if url else None
    rows.append(_lock_row(lab))
    rep.measure("table", [{k: v for k, v in r.items() if k != "samples_s"} for r in rows])
    rep.measure("samples_s", {r["kind"]: r["samples_s"] for r in rows if "samples_s" in r})
    rep.measure("method", lab.method)
    rep.measure("network_check", net)
    _verdicts(lab, {r["kind"]: r for r in rows}, net)


MEASURES: dict[str, tuple[int, str, str]] = {
    "round trip": (100, "rtt_n", "echo"),
    "100 B one-way": (100, "small_n", "sink"),
    "1 MiB one-way": (1 << 20, "big_n", "sink"),
}
"""Each measure: message size, the parameter giving the message count, and the child's mode."""


def _rows(lab: Lab, url: str | None) -> list[IpcRow]:
    """Every mechanism measured in turn for each measure, `repeats` rounds; one row per mechanism."""
    rep, ctx = lab.report, lab.ctx()
    reps = max(1, int(lab.p("repeats")))
    kinds = [k for k in KINDS if k != "redis" or url]
    samples: dict[str, dict[str, list[float]]] = {k: {} for k in kinds}
    for key, (size, count, mode) in MEASURES.items():
        n = int(lab.p(count))
        got = interleaved({k: functools.partial(measure, ctx, k, size, n, mode, url) for k in kinds}, reps)
        for kind, values in got.items():
            samples[kind][key] = values
        rep.event(f"{key}: {reps} rounds, each measuring {', '.join(kinds)} in turn")
    rows: list[IpcRow] = []
    for kind in kinds:
        s = samples[kind]
        rows.append(
            {
                "kind": kind,
                "mechanism": LABELS[kind],
                "chapter_performance": CHAPTER.get(kind, "-"),
                "rtt_us": round(median(s["round trip"]) * 1e6, 1),
                "rtt_spread_us": spread(s["round trip"], 1e6),
                "msgs_per_s_100B": round(1 / median(s["100 B one-way"])),
                "MiB_per_s": round(1 / median(s["1 MiB one-way"]), 1),
                "samples_s": s,
            }
        )
        rep.event(
            f"{LABELS[kind]:30} round trip {spread(s['round trip'], 1e6)} µs | "
            f"{1 / median(s['100 B one-way']):>10,.0f} msgs/s of 100 B | {1 / median(s['1 MiB one-way']):8,.1f} "
            f"MiB/s (median (min-max) of {reps}, measured in turn with the others)"
        )
    return rows


def _lock_row(lab: Lab) -> IpcRow:
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


def _verdicts(lab: Lab, rows: dict[str, IpcRow], net: NetworkCheck | None) -> None:
    rep, ctx = lab.report, lab.ctx()
    samples = {k: r["samples_s"] for k, r in rows.items() if "samples_s" in r}
    table = {"round trip": ("µs", 1e6, 1), "100 B one-way": ("µs", 1e6, 2), "1 MiB one-way": ("ms", 1e3, 2)}
    per = [speed_verdict(samples["pipe"][m], samples["queue"][m]) for m in MEASURES]
    verdict = combined(per)
    rep.claim(
        "Pipe performs better (高) than Queue (中)",
        verdict,
        {"holds": "Pipe was faster", "wrong": "Queue was faster", "too-close": "too close to call"}[verdict]
        + f" ({rounds_won('Pipe', samples['pipe'], samples['queue'])}): "
        + speed_table({"Pipe": samples["pipe"], "Queue": samples["queue"]}, table),
        speed=True,
    )
    others = [k for k in samples if k not in ("manager", "redis")]
    # Manager is the slowest when it is clearly slower than the slowest of the others (by median)
    second = max(others, key=lambda k: median(samples[k]["round trip"]))
    runner_up = samples[second]["round trip"]
    slowest = speed_verdict(runner_up, samples["manager"]["round trip"])
    rtt = {k: spread(v["round trip"], 1e6) for k, v in samples.items()}
    rep.claim(
        "Manager is the slowest (低) way to share data in-host",
        slowest,
        lead(slowest, f"{second} (the slowest of the others)", runner_up, "Manager", samples["manager"]["round trip"])
        + f": round trip (µs) Manager {rtt['manager']}, "
        + ", ".join(f"{k} {rtt[k]}" for k in others)
        + " (every Manager access is a request to its server process)",
        speed=True,
    )
    sock = speed_verdict(samples["socket"]["round trip"], samples["queue"]["round trip"])
    rep.claim(
        "sockets perform well (高, above Queue's 中)",
        sock,
        lead(sock, "the socketpair", samples["socket"]["round trip"], "Queue", samples["queue"]["round trip"])
        + f": round trip socketpair {rtt['socket']} µs vs Queue {rtt['queue']} µs (Pipe {rtt['pipe']} µs)",
        speed=True,
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
    only_value = shared.value == 42 and "other" not in kinds.values()
    rep.claim(
        "Queue, Pipe, Value/Array and Manager are all 'shared memory' (内存共享类)",
        "wrong" if only_value else "not-measured",
        f"only Value/Array are shared memory (a child's write was visible in the parent without sending); Pipe is a "
        f"{kinds['Pipe()']}, Queue a {kinds['Queue']} plus a feeder thread, Manager a server process: all message "
        "passing that pickles and copies"
        if only_value
        else f"could not tell the mechanisms apart here: Pipe is a {kinds['Pipe()']}, Queue a {kinds['Queue']}, "
        f"a child's write to a Value seen by the parent: {shared.value == 42}",
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


def _network_check(lab: Lab, url: str) -> NetworkCheck:
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


def _network_claims(lab: Lab, rows: dict[str, IpcRow], net: NetworkCheck | None) -> None:
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
        f"{rows['redis']['msgs_per_s_100B']:,} msgs/s of 100 B one per call",
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
