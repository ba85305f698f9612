"""Section 6.5, beyond `lock-cost`: the price of a Lock per update without process start-up in the timing,
and what contention adds (several processes taking turns on one Lock)."""

from __future__ import annotations

import time
from typing import Any

from workers.lab.base import Lab, experiment
from workers.lab.verdicts import interleaved, lead, speed_verdict, spread
from workers.proclife import reaped

CONTENTION = "contention makes a Lock dearer: processes sharing one Lock pay more per update than one process alone"


def _bump(counter: Any, lock: Any, ops: int) -> float:
    """`ops` read-modify-writes of a shared counter (under `lock` if given); seconds taken."""
    start = time.perf_counter()
    if lock is None:
        for _ in range(ops):
            counter.value += 1
    else:
        for _ in range(ops):
            with lock:
                counter.value += 1
    return time.perf_counter() - start


def _bumper(counter: Any, lock: Any, barrier: Any, times: Any, slot: int, ops: int) -> None:
    barrier.wait(60)  # everyone starts together: process creation is not timed
    times[slot] = _bump(counter, lock, ops)


def _in_children(lab: Lab, workers: int, ops: int, locked: bool) -> tuple[float, int]:
    """(mean seconds per update as each child saw it, final counter) for `workers` children bumping at once."""
    ctx = lab.ctx()
    counter = ctx.RawValue("l", 0)  # no lock of its own: the only lock is the one we pass
    times = ctx.RawArray("d", workers)
    lock = ctx.Lock() if locked else None
    barrier = ctx.Barrier(workers)
    procs = [ctx.Process(target=_bumper, args=(counter, lock, barrier, times, i, ops)) for i in range(workers)]
    with reaped(*procs):
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
    return sum(times) / workers / ops, int(counter.value)


@experiment(
    "lock-contention",
    "6.5",
    "ns per update of a shared counter: no lock, a Lock alone, and one Lock shared by several processes at once",
    params={"ops": 20_000, "workers": 2, "repeats": 5},
    limits={"ops": (100, 1_000_000), "workers": (2, 16), "repeats": (1, 20)},
    param_help={
        "ops": "updates per process per timed measurement (timed inside the process: no start-up included)",
        "workers": "processes sharing one Lock in the contended case",
        "repeats": "interleaved rounds (median and spread reported)",
    },
)
def lock_contention(lab: Lab) -> None:
    rep, ctx = lab.report, lab.ctx()
    ops, workers, reps = int(lab.p("ops")), int(lab.p("workers")), int(lab.p("repeats"))
    counter, lock = ctx.RawValue("l", 0), ctx.Lock()
    finals: list[int] = []

    def contended() -> float:
        per_op, final = _in_children(lab, workers, ops, locked=True)
        finals.append(final)
        return per_op

    shared_name = f"Lock, {workers} processes"
    samples = interleaved(
        {
            "no lock": lambda: _bump(counter, None, ops) / ops,
            "Lock": lambda: _bump(counter, lock, ops) / ops,
            "Lock, one process": lambda: _in_children(lab, 1, ops, locked=True)[0],
            shared_name: contended,
        },
        reps,
    )
    for name, got in samples.items():
        rep.event(f"{name}: {spread(got, 1e9, 0)} ns per update (median (min-max) of {len(got)} rounds)")
    rep.measure("ns_per_update", {name: [round(x * 1e9, 1) for x in got] for name, got in samples.items()})
    rep.measure("counter_with_lock", finals)
    bare, alone = samples["no lock"], samples["Lock"]
    child, shared = samples["Lock, one process"], samples[shared_name]
    exact = all(final == workers * ops for final in finals)
    worse = speed_verdict(child, shared) if exact else "wrong"
    rep.claim(
        CONTENTION,
        worse,
        f"{lead(worse, 'one process', child, f'{workers} processes', shared)}: a Lock alone "
        f"{spread(child, 1e9, 0)} ns vs {workers} processes taking turns {spread(shared, 1e9, 0)} ns per update "
        f"(each waits while another holds it, and the lock's memory moves between cores); for scale, in this "
        f"process: no lock {spread(bare, 1e9, 0)} ns, an uncontended Lock {spread(alone, 1e9, 0)} ns"
        if exact
        else f"the shared counter ended at {finals}, not {workers * ops} every round: the Lock did not hold",
        scope="edge",
        speed=True,
    )
