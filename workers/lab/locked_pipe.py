"""Section 6.4, beyond `many-writers`: what makes a Queue safe for many writers (a Lock around each write,
which a Pipe can borrow), and what order many writers' items arrive in."""

from __future__ import annotations

import contextlib
import queue as queue_mod
import threading
import time
from typing import Any, TypedDict

from workers.lab.base import Lab, experiment
from workers.proclife import reaped

LOCKED_PIPE = (
    "one Lock held around every send_bytes() makes a Pipe end safe for several writers (what a Queue does inside)"
)
PER_WRITER_ORDER = (
    "with many writers, a Queue keeps each writer's items in the order it put them, interleaved between writers"
)

STALL_S = 3.0
"""Seconds without any message after which the reader stops waiting (the stream is broken or a writer died)."""


class Delivery(TypedDict):
    """What the reader got from the writers of one case."""

    sent: int
    intact: int
    damaged: int
    out_of_order: int
    writer_switches: int
    outcome: str
    seconds: float


def _payload(tag: int, seq: int, size: int) -> bytes:
    """`size` bytes: an 8-byte header (writer tag, sequence number) and the tag byte repeated."""
    head = tag.to_bytes(4, "big") + seq.to_bytes(4, "big")
    return head + bytes([tag % 251 + 1]) * (size - len(head))


def _check(data: bytes, size: int) -> tuple[int, int] | None:
    """(tag, seq) of an intact message; None if its length or contents are not what one writer sent."""
    if len(data) != size or size < 9:
        return None
    tag, seq = int.from_bytes(data[:4], "big"), int.from_bytes(data[4:8], "big")
    return (tag, seq) if data == _payload(tag, seq, size) else None


def _together(barrier: Any) -> None:
    """Wait until every writer is up (spawn children finish starting far apart), then all write at once."""
    with contextlib.suppress(threading.BrokenBarrierError):
        barrier.wait(60)


def _queue_writer(q: Any, go: Any, tag: int, count: int, size: int) -> None:
    _together(go)
    for seq in range(count):
        q.put(_payload(tag, seq, size))


def _pipe_writer(conn: Any, reader: Any, lock: Any, go: Any, tag: int, count: int, size: int) -> None:
    reader.close()  # our inherited copy: once the parent closes its own, our writes fail instead of blocking
    _together(go)
    try:
        for seq in range(count):
            if lock is None:
                conn.send_bytes(_payload(tag, seq, size))
            else:
                with lock:
                    conn.send_bytes(_payload(tag, seq, size))
    except OSError:
        pass  # the reader gave up on a broken stream


class _Tally:
    """Counts intact, damaged and out-of-order messages as they arrive."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.intact = self.damaged = self.out_of_order = 0
        self.next_seq: dict[int, int] = {}
        self.switches = 0
        self.last_tag: int | None = None

    def add(self, data: bytes) -> None:
        got = _check(data, self.size)
        if got is None:
            self.damaged += 1
            return
        tag, seq = got
        if self.last_tag is not None and tag != self.last_tag:
            self.switches += 1
        self.last_tag = tag
        if seq != self.next_seq.get(tag, 0):
            self.out_of_order += 1
        self.next_seq[tag] = seq + 1
        self.intact += 1

    def seen(self) -> int:
        return self.intact + self.damaged


def _queue_case(lab: Lab, writers: int, count: int, size: int) -> Delivery:
    ctx = lab.ctx()
    q, go = ctx.Queue(), ctx.Barrier(writers)
    procs = [ctx.Process(target=_queue_writer, args=(q, go, tag, count, size)) for tag in range(1, writers + 1)]
    tally, outcome = _Tally(size), "all received"
    start = time.perf_counter()
    with reaped(*procs):
        for p in procs:
            p.start()
        while tally.seen() < writers * count:
            try:
                tally.add(q.get(timeout=STALL_S))
            except queue_mod.Empty:
                outcome = f"stalled: nothing for {STALL_S:.0f} s"
                break
    q.close()
    return _delivery(writers * count, tally, outcome, start)


def _delivery(sent: int, tally: _Tally, outcome: str, start: float) -> Delivery:
    return {
        "sent": sent,
        "intact": tally.intact,
        "damaged": tally.damaged,
        "out_of_order": tally.out_of_order,
        "writer_switches": tally.switches,
        "outcome": outcome,
        "seconds": round(time.perf_counter() - start, 3),
    }


def _pipe_case(lab: Lab, writers: int, count: int, size: int, locked: bool) -> Delivery:
    ctx = lab.ctx()
    reader, writer = ctx.Pipe(duplex=False)
    lock, go = (ctx.Lock() if locked else None), ctx.Barrier(writers)
    procs = [
        ctx.Process(target=_pipe_writer, args=(writer, reader, lock, go, tag, count, size))
        for tag in range(1, writers + 1)
    ]
    tally, outcome = _Tally(size), "all received"
    start = time.perf_counter()
    with reaped(*procs):
        for p in procs:
            p.start()
        writer.close()
        while tally.seen() < writers * count:
            try:
                if not reader.poll(STALL_S):
                    outcome = f"stalled: nothing for {STALL_S:.0f} s (a length read from mid-message)"
                    break
                tally.add(reader.recv_bytes(maxlength=2 * size))
            except (OSError, EOFError) as exc:
                outcome = f"stream broken: {type(exc).__name__}: {exc}"
                tally.damaged += 1
                break
        reader.close()  # unblocks writers stuck on a full pipe
    return _delivery(writers * count, tally, outcome, start)


def _line(d: Delivery) -> str:
    return (
        f"{d['intact']} of {d['sent']} intact, {d['damaged']} damaged, {d['out_of_order']} out of order "
        f"({d['outcome']}, {d['seconds'] * 1000:.0f} ms)"
    )


@experiment(
    "locked-pipe",
    "6.4",
    "many writers on one Queue, on one Pipe end, and on one Pipe end with a Lock around each send: what arrives",
    params={"writers": 4, "items": 40, "item_kib": 256},
    limits={"writers": (2, 16), "items": (1, 2000), "item_kib": (1, 2048)},
    param_help={
        "writers": "writer processes sharing the Queue (and the Pipe end)",
        "items": "items each writer sends",
        "item_kib": "KiB per item (above the 64 KiB pipe capacity a write goes out in pieces)",
    },
)
def locked_pipe(lab: Lab) -> None:
    rep = lab.report
    writers, count, size = int(lab.p("writers")), int(lab.p("items")), int(lab.p("item_kib")) * 1024
    rep.event(f"{writers} writer processes, {count} items of {size // 1024} KiB each, start method {lab.method}")
    q = _queue_case(lab, writers, count, size)
    rep.event(f"one Queue, {writers} writers: {_line(q)}")
    p = _pipe_case(lab, writers, count, size, locked=False)
    rep.event(f"one Pipe end, {writers} writers, no lock: {_line(p)}")
    pl = _pipe_case(lab, writers, count, size, locked=True)
    rep.event(f"one Pipe end, {writers} writers, each send_bytes() under one shared Lock: {_line(pl)}")
    rep.measure("queue", q)
    rep.measure("pipe_no_lock", p)
    rep.measure("pipe_with_lock", pl)
    locked_ok = pl["intact"] == pl["sent"] and not pl["damaged"]
    unlocked = (
        f"without the Lock the same writers damaged {p['damaged']} and delivered {p['intact']} intact ({p['outcome']})"
        if p["damaged"] or p["intact"] < p["sent"]
        else "without it nothing was damaged this run either (no proof of safety)"
    )
    rep.edge(
        LOCKED_PIPE,
        "holds" if locked_ok else "wrong",
        f"all {pl['sent']} messages of {size // 1024} KiB arrived whole with the Lock; {unlocked}. A Queue's "
        f"feeder thread takes such a lock around every write"
        if locked_ok
        else f"even with the Lock: {_line(pl)}",
    )
    in_order = q["intact"] == q["sent"] and not q["out_of_order"]
    rep.edge(
        PER_WRITER_ORDER,
        "holds" if in_order else "wrong",
        f"all {q['sent']} items arrived, each writer's in its own order, while arrivals switched writer "
        f"{q['writer_switches']} times: FIFO holds per writer, not across writers"
        if in_order
        else f"the Queue delivered {_line(q)}",
    )
