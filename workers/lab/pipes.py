"""Section 6.3-6.4: Pipe one-way and duplex, EOF on close, several writers; Queue vs Pipe measured."""

from __future__ import annotations

import functools
import time
from typing import Any

from workers.errors import LabError
from workers.lab.base import Lab, experiment, median
from workers.lab.ipc_bench import measure
from workers.lab.verdicts import combined, interleaved, rounds_won, speed_table, speed_verdict, spread
from workers.proclife import reaped

SENT: tuple[Any, ...] = ("Hello from Sender-1", {"type": "data", "value": 42}, [1, 2, 3, 4, 5], *range(1000))
"""What the one-way sender sends: the chapter's three messages, then 1000 ints (about 16 KiB pickled)."""

RECV_SAFETY_S = 60.0
"""Seconds without any message after which the one-way receiver gives up (the sender must have died)."""


def _sender(conn: Any, close: bool) -> None:
    for msg in SENT:
        conn.send(msg)
    if close:
        conn.close()


def _echo_once(conn: Any) -> None:
    conn.send(("child got", conn.recv()))


def pipe_writer(conn: Any, reader: Any, tag: int, count: int, size: int) -> None:
    """A writer child: `count` messages of `size` bytes `tag` down a shared pipe (also `many-writers`')."""
    reader.close()  # our inherited copy: once the parent closes its own, our writes fail instead of blocking
    try:
        for _ in range(count):
            conn.send_bytes(bytes([tag]) * size)
    except OSError:
        pass  # the parent stopped reading (stream already broken)


def _recv_expected(reader: Any, count: int) -> list[Any]:
    """Receive `count` messages, reading while the sender writes (so a small pipe buffer cannot stall it)."""
    got: list[Any] = []
    while len(got) < count:
        if not reader.poll(RECV_SAFETY_S):
            raise LabError(f"the Pipe sender stopped after {len(got)} of {count} messages")
        try:
            got.append(reader.recv())
        except EOFError:
            raise LabError(f"EOF after {len(got)} of {count} messages: the sender died") from None
    return got


def _after_sender_exited(reader: Any) -> str:
    """What a further recv() does once every message is read and the sender has exited.

    Nothing can arrive any more, so poll(0) decides it at once: False means recv() would block for ever
    (a write end is still open somewhere); True with nothing left to read means EOF.
    """
    if not reader.poll(0):
        return "blocked (no data, no EOF)"
    try:
        extra = reader.recv()
    except EOFError:
        return "EOFError"
    return f"unexpected extra message {extra!r}"


def _first_difference(got: list[Any]) -> int | None:
    """Index of the first message that is not the one sent at that position (None: all in order)."""
    return next((i for i, (a, b) in enumerate(zip(got, SENT, strict=True)) if a != b), None)


def _one_way(lab: Lab, parent_closes: bool) -> tuple[list[Any], str]:
    ctx = lab.ctx()
    reader, writer = ctx.Pipe(duplex=False)
    sender = ctx.Process(target=_sender, args=(writer, True))
    with reaped(sender):
        sender.start()
        if parent_closes:
            writer.close()  # the parent's copy of the sending end
        got = _recv_expected(reader, len(SENT))
        sender.join()  # the sender has closed its end and exited: every message is already read
        how = _after_sender_exited(reader)
    reader.close()
    if not parent_closes:
        writer.close()
    return got, how


def _writers(lab: Lab, count: int, size: int) -> dict[str, int]:
    """Two processes send on the same Pipe end at once; count intact and corrupted messages."""
    ctx = lab.ctx()
    reader, writer = ctx.Pipe(duplex=False)
    procs = [ctx.Process(target=pipe_writer, args=(writer, reader, tag, count, size)) for tag in (1, 2)]
    intact = corrupt = 0
    outcome = "all received"
    with reaped(*procs):
        for p in procs:
            p.start()
        writer.close()
        while intact + corrupt < 2 * count:
            try:
                if not reader.poll(5):
                    outcome = "stalled"
                    break
                data = reader.recv_bytes(maxlength=2 * size)
            except (OSError, EOFError) as exc:
                outcome = f"stream broken: {type(exc).__name__}: {exc}"
                corrupt += 1
                break
            if len(data) == size and data.count(data[:1]) == size:
                intact += 1
            else:
                corrupt += 1
        reader.close()  # unblocks writers stuck on a full pipe
    return {"sent": 2 * count, "intact": intact, "corrupt": corrupt, "outcome": outcome}  # type: ignore[dict-item]


@experiment(
    "pipe",
    "6.3",
    "Pipe one-way and duplex, message order, EOF on close, and two writers on one end",
    params={"writer_msgs": 200, "writer_kib": 128},
    limits={"writer_msgs": (1, 10_000), "writer_kib": (1, 4096)},
    param_help={"writer_msgs": "messages each of the two writers sends", "writer_kib": "KiB per message"},
)
def pipe(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    kept, how_kept = _one_way(lab, parent_closes=False)
    closed, how_closed = _one_way(lab, parent_closes=True)
    rep.event(f"one-way Pipe(duplex=False): received {[type(m).__name__ for m in closed[:3]]} + 1000 ints")
    first_off = {"run 1": _first_difference(kept), "run 2": _first_difference(closed)}
    ordered = all(i is None for i in first_off.values())
    rep.event(f"the {len(SENT)} messages arrived in the order sent: {ordered}")
    rep.event(f"sender closed its end; parent kept its own copy of it -> receiver: {how_kept}")
    rep.event(f"sender closed its end; parent had closed its copy too -> receiver: {how_closed}")
    a, b = ctx.Pipe()
    child = ctx.Process(target=_echo_once, args=(b,))
    with reaped(child):
        child.start()
        a.send("ping")
        reply = a.recv()
    r, w = ctx.Pipe(duplex=False)
    try:
        r.send("x")
        readonly = "no error"
    except OSError as exc:
        readonly = f"OSError: {exc}"
    r.close()
    w.close()
    rep.event(
        f"duplex Pipe(): parent sent 'ping', child answered {reply!r}; Pipe(duplex=False) read end .send() "
        f"-> {readonly}"
    )
    blast = _writers(lab, int(lab.p("writer_msgs")), int(lab.p("writer_kib")) * 1024)
    rep.event(f"two processes sending {lab.p('writer_kib')} KiB messages on one Pipe end: {blast}")
    rep.measure("eof", {"parent_kept_copy": how_kept, "parent_closed_copy": how_closed})
    rep.measure("ordered", ordered)
    rep.measure("two_writers", blast)
    rep.claim(
        "Pipe is a two-way channel (duplex by default)",
        "holds" if reply == ("child got", "ping") and readonly.startswith("OSError") else "wrong",
        f"Pipe() carried 'ping' and the reply; Pipe(duplex=False) is one-way: {readonly}",
    )
    rep.claim(
        "unlike Queue, Pipe has no FIFO order",
        "wrong" if ordered else "holds",
        f"{len(SENT)} messages, sent twice, arrived exactly in the order sent: a Pipe is a byte stream, so it is FIFO"
        if ordered
        else f"the messages did not arrive in the order sent (index of the first message out of place: {first_off})",
    )
    rep.claim(
        "when the sender closes its end, the receiver gets EOFError",
        "holds" if how_closed == "EOFError" and how_kept != "EOFError" else "wrong",
        f"only once every copy of the sending end is closed: with the parent still holding one (as in the "
        f"chapter's demo) recv() {how_kept}; after closing it: {how_closed}",
    )
    broken = blast["corrupt"] > 0
    rep.claim(
        "Pipe has no built-in lock: unsafe with several writers (Queue locks)",
        "holds" if broken else "not-measured",
        f"{blast['corrupt']} corrupted of {blast['intact'] + blast['corrupt']} received "
        f"({blast['outcome']}): "
        "large writes from two processes interleaved"
        if broken
        else f"no corruption seen in {blast['sent']} messages this run (not proof of safety)",
        "6.4",
    )


@experiment(
    "queue-vs-pipe",
    "6.4",
    "Queue vs Pipe measured: round-trip latency, msgs/s for 100 B and 1 MiB messages",
    params={"rtt_n": 500, "small_n": 5000, "big_n": 20, "repeats": 5},
    limits={"rtt_n": (10, 100_000), "small_n": (10, 1_000_000), "big_n": (1, 1000), "repeats": (1, 20)},
    param_help={
        "rtt_n": "round trips per repetition",
        "small_n": "100-byte one-way messages per repetition",
        "big_n": "1 MiB one-way messages per repetition",
        "repeats": "repetitions, Pipe and Queue in turn (median and min-max reported)",
    },
)
def queue_vs_pipe(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    reps = max(1, int(lab.p("repeats")))
    jobs = {
        "round trip": (100, int(lab.p("rtt_n")), "echo"),
        "100 B one-way": (100, int(lab.p("small_n")), "sink"),
        "1 MiB one-way": (1 << 20, int(lab.p("big_n")), "sink"),
    }
    # seconds per message, each measure taken Pipe, Queue, Pipe, Queue, ... so noise hits both
    samples: dict[str, dict[str, list[float]]] = {"Pipe": {}, "Queue": {}}
    for key, (size, n, mode) in jobs.items():
        got = interleaved(
            {
                "Pipe": functools.partial(measure, ctx, "pipe", size, n, mode),
                "Queue": functools.partial(measure, ctx, "queue", size, n, mode),
            },
            reps,
        )
        for kind, values in got.items():
            samples[kind][key] = values
    res = {
        kind.lower(): {
            "rtt_us": round(median(s["round trip"]) * 1e6, 1),
            "msgs_per_s_100B": round(1 / median(s["100 B one-way"])),
            "msgs_per_s_1MiB": round(1 / median(s["1 MiB one-way"]), 1),
        }
        for kind, s in samples.items()
    }
    for kind, s in samples.items():
        rep.event(
            f"{kind:5}: round trip {spread(s['round trip'], 1e6)} µs, {spread(s['100 B one-way'], 1e6, 2)} µs per "
            f"100 B message, {spread(s['1 MiB one-way'], 1e3, 2)} ms per 1 MiB message (median (min-max) of {reps})"
        )
    backlog = {size: _unread_sends(lab, size) for size in (100, 10 * 1024)}
    rep.event(
        "a child sending into a Pipe nobody reads: send() returned "
        + ", ".join(f"{n} times for {size} B messages" for size, n in backlog.items())
        + " before it blocked"
    )
    rep.measure("results", res)
    rep.measure("method", lab.method)
    rep.measure("pipe_sends_before_blocking", backlog)
    per = [speed_verdict(samples["Pipe"][key], samples["Queue"][key]) for key in jobs]
    verdict = combined(per)
    table = speed_table(samples, {"round trip": ("µs", 1e6, 1), "100 B one-way": ("µs", 1e6, 2),
                                  "1 MiB one-way": ("ms", 1e3, 2)})  # fmt: skip
    rep.claim(
        "Pipe is faster than Queue (性能: 较快 vs 较慢)",
        verdict,
        {"holds": "Pipe was faster", "wrong": "Queue was faster", "too-close": "too close to call"}[verdict]
        + f" ({rounds_won('Pipe', samples['Pipe'], samples['Queue'])}): {table}; start method {lab.method}",
        speed=True,
    )
    small, large = backlog[100], backlog[10 * 1024]
    buffered = small > 1
    rep.claim(
        "缓冲支持: Queue supports maxsize, Pipe has none",
        "holds" if buffered and small > large else "wrong",
        f"a Pipe does buffer, in the kernel: {small} messages of 100 B (or {large} of 10 KiB) were accepted before "
        "send() blocked; but the bound is in bytes, set by the OS, not a number of messages you choose as with "
        "Queue(maxsize)"
        if buffered and small > large
        else f"send() blocked after {small} messages of 100 B and {large} of 10 KiB",
        "6.4",
    )


def _sender_until_blocked(conn: Any, size: int, counter: Any) -> None:
    payload = b"x" * size
    while True:
        conn.send_bytes(payload)
        counter.value += 1


def _unread_sends(lab: Lab, size: int) -> int:
    """How many `size`-byte messages a child's Pipe send() accepts while nobody reads (then it blocks)."""
    ctx = lab.ctx()
    reader, writer = ctx.Pipe(duplex=False)
    counter = ctx.Value("q", 0, lock=False)
    child = ctx.Process(target=_sender_until_blocked, args=(writer, size, counter))
    with reaped(child, timeout=0):
        child.start()
        last, still_since = -1, time.perf_counter()
        while time.perf_counter() - still_since < 0.3 and counter.value < 10**6:
            if counter.value != last:
                last, still_since = counter.value, time.perf_counter()
            time.sleep(0.01)
        child.kill()
    reader.close()
    writer.close()
    return int(counter.value)
