"""Sections 6.4-6.6 measured further: Queue's lock under many writers (vs a Pipe), and what a Lock costs."""

from __future__ import annotations

import functools
import queue as queue_mod
import time
from typing import Any

from workers.lab.base import Lab, experiment
from workers.lab.pipes import pipe_writer
from workers.lab.verdicts import interleaved, lead, speed_verdict, spread
from workers.proclife import reaped

# -- 6.4 many writers ------------------------------------------------------------------------------------


def _queue_writer(q: Any, tag: int, count: int, size: int) -> None:
    for _ in range(count):
        q.put(bytes([tag]) * size)


def _intact(data: bytes, size: int) -> bool:
    return len(data) == size and data.count(data[:1]) == size


def _through_queue(lab: Lab, writers: int, count: int, size: int) -> dict[str, Any]:
    ctx = lab.ctx()
    q = ctx.Queue()
    procs = [ctx.Process(target=_queue_writer, args=(q, tag + 1, count, size)) for tag in range(writers)]
    intact = corrupt = 0
    with reaped(*procs):
        for p in procs:
            p.start()
        try:
            for _ in range(writers * count):
                if _intact(q.get(timeout=30), size):
                    intact += 1
                else:
                    corrupt += 1
        except queue_mod.Empty:
            pass
    q.close()
    q.join_thread()
    return {"sent": writers * count, "intact": intact, "corrupt": corrupt}


def _through_pipe(lab: Lab, writers: int, count: int, size: int) -> dict[str, Any]:
    ctx = lab.ctx()
    reader, writer = ctx.Pipe(duplex=False)
    procs = [ctx.Process(target=pipe_writer, args=(writer, reader, t + 1, count, size)) for t in range(writers)]
    intact = corrupt = 0
    with reaped(*procs):
        for p in procs:
            p.start()
        writer.close()
        try:
            while intact + corrupt < writers * count and reader.poll(5):
                if _intact(reader.recv_bytes(maxlength=2 * size), size):
                    intact += 1
                else:
                    corrupt += 1
        except (OSError, EOFError):
            corrupt += 1  # the stream itself broke: a length header was overwritten by another writer
        reader.close()  # unblocks writers stuck on a full pipe
    return {"sent": writers * count, "intact": intact, "corrupt": corrupt}


@experiment(
    "many-writers",
    "6.4",
    "several processes writing large messages at once: one Queue (has a lock) vs one Pipe end (has none)",
    params={"writers": 4, "msgs": 50, "kib": 128},
    limits={"writers": (2, 16), "msgs": (1, 2000), "kib": (1, 1024)},
    param_help={"writers": "writer processes", "msgs": "messages per writer", "kib": "KiB per message"},
)
def many_writers(lab: Lab) -> None:
    rep = lab.report
    writers, count, size = int(lab.p("writers")), int(lab.p("msgs")), int(lab.p("kib")) * 1024
    q = _through_queue(lab, writers, count, size)
    rep.event(f"{writers} writers x {count} messages of {lab.p('kib')} KiB on one Queue: {q}")
    p = _through_pipe(lab, writers, count, size)
    rep.event(f"the same on one Pipe end: {p}")
    rep.measure("queue", q)
    rep.measure("pipe", p)
    safe = q["intact"] == q["sent"] and q["corrupt"] == 0
    rep.claim(
        "Queue has a built-in lock (内置锁): many writers at once lose or garble nothing",
        "holds" if safe else "wrong",
        f"all {q['sent']} messages from {writers} writers arrived intact through the Queue (its put() writes each "
        f"message whole under a lock); through one Pipe end the same writers garbled {p['corrupt']} and "
        f"delivered {p['intact']} intact of {p['sent']}"
        if safe
        else f"through the Queue: {q['intact']} intact and {q['corrupt']} garbled of {q['sent']}",
        "6.4",
    )


# -- 6.5/6.6 what a Lock costs ---------------------------------------------------------------------------


def _bump(shared: Any, lock: Any, n: int) -> None:
    for _ in range(n):
        if lock is None:
            shared.value += 1
        else:
            with lock:
                shared.value += 1


def _run_bumpers(lab: Lab, processes: int, n: int, locked: bool) -> tuple[float, int]:
    """Seconds for `processes` children to add n each to one shared counter; the final count."""
    ctx = lab.ctx()
    shared = ctx.Value("q", 0, lock=False)
    lock = ctx.Lock() if locked else None
    procs = [ctx.Process(target=_bump, args=(shared, lock, n)) for _ in range(processes)]
    start = time.perf_counter()
    with reaped(*procs, timeout=60):
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    return time.perf_counter() - start, int(shared.value)


@experiment(
    "lock-cost",
    "6.6",
    "a shared counter bumped by several processes without and with a Lock: lost updates, and the Lock's cost",
    params={"processes": 2, "n": 200_000, "repeats": 3},
    limits={"processes": (2, 16), "n": (100, 1_000_000), "repeats": (1, 20)},
    param_help={"processes": "processes bumping the counter", "n": "increments per process", "repeats": "rounds"},
)
def lock_cost(lab: Lab) -> None:
    rep = lab.report
    procs, n = int(lab.p("processes")), int(lab.p("n"))
    finals: dict[str, list[int]] = {"no lock": [], "Lock": []}

    def timed_run(locked: bool) -> float:
        seconds, final = _run_bumpers(lab, procs, n, locked)
        finals["Lock" if locked else "no lock"].append(final)
        return seconds

    times = interleaved(
        {"no lock": functools.partial(timed_run, False), "Lock": functools.partial(timed_run, True)},
        int(lab.p("repeats")),
    )
    expected = procs * n
    for name in times:
        rep.event(f"{name:7}: {procs} x {n} increments in {spread(times[name], 1000)} ms; final counts {finals[name]}")
    rep.measure("expected", expected)
    rep.measure("final_counts", finals)
    rep.measure("seconds", times)
    lost = [expected - f for f in finals["no lock"]]
    rep.claim(
        "without a lock, concurrent updates of shared data are lost (6.5.1)",
        "holds" if any(lost) else "not-measured",
        f"{procs} processes each added {n} to one shared Value without a lock: {lost} increments lost per round "
        "(read, add and write are three steps another process can interleave)"
        if any(lost)
        else f"no increment was lost in {len(lost)} rounds this time (not proof of safety)",
        "6.5.1",
    )
    exact = all(f == expected for f in finals["Lock"])
    rep.claim(
        "with a Lock every update counts (6.5.2)",
        "holds" if exact else "wrong",
        f"final counts {finals['Lock']}, expected {expected}",
        "6.5.2",
    )
    verdict = speed_verdict(times["no lock"], times["Lock"])
    per_op = {k: (min(v) / expected) * 1e6 for k, v in times.items()}
    rep.claim(
        "a Lock has a cost (性能: 中): the protected updates are slower",
        verdict,
        lead(verdict, "no lock", times["no lock"], "Lock", times["Lock"])
        + f": {per_op['no lock']:.2f} µs vs {per_op['Lock']:.2f} µs per increment (best rounds; process start "
        "included)",
        "6.6",
        speed=True,
    )
