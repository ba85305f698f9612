"""Section 3.3.2's scheduling algorithms as a pure simulator: a job mix in, per-algorithm averages out.

Time is in abstract integer units. A job is `{"name", "arrival", "burst", "priority"}` (priority is one
of the RQ queue names and is used only by `mlq`). Algorithms:

- `fcfs`: first come, first served (non-preemptive).
- `sjf`: shortest job first, non-preemptive (the shortest *arrived* job runs to completion).
- `rr`: round robin with a quantum.
- `mfq`: multilevel feedback queue: new jobs enter level 0; a job that uses its whole quantum drops a
  level (quanta q, 2q, then FCFS at the bottom, q being RR's quantum in `simulate`); the highest
  non-empty level runs next (a running slice is not interrupted by arrivals).
- `mlq`: a multilevel queue with static priorities, non-preemptive, FIFO per level and no feedback:
  exactly what an RQ worker listening on `high, default, low` does (it always dequeues from the first
  non-empty queue, runs the job to completion, and never moves a job between queues).

Every algorithm pays the same `switch_cost` units each time the CPU goes from one job to another, so
that no algorithm is charged for switching while another is not.

Waiting = turnaround - burst; turnaround = completion - arrival; response = first run - arrival.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NotRequired, TypedDict


class Job(TypedDict):
    """One job of a mix (not an RQ job): integer time units; `priority` is an RQ queue name (for `mlq`)."""

    name: str
    arrival: int
    burst: int
    priority: NotRequired[str]


class JobTimes(TypedDict):
    completion: int
    turnaround: int
    waiting: int
    response: int


class Metrics(TypedDict):
    """One algorithm's schedule of a mix, measured."""

    avg_waiting: float
    avg_turnaround: float
    avg_response: float
    max_waiting: int
    makespan: int
    switches: int
    order: list[str]
    per_job: dict[str, JobTimes]


Segment = tuple[str, int, int]

PRIORITIES: tuple[str, ...] = ("high", "default", "low")
"""RQ queue names in the order a worker drains them."""

DEFAULT_MIX: list[Job] = [
    {"name": "A", "arrival": 0, "burst": 8, "priority": "low"},
    {"name": "B", "arrival": 1, "burst": 4, "priority": "default"},
    {"name": "C", "arrival": 2, "burst": 9, "priority": "low"},
    {"name": "D", "arrival": 3, "burst": 5, "priority": "high"},
    {"name": "E", "arrival": 4, "burst": 2, "priority": "high"},
]
"""A textbook mix: long jobs first, short ones arriving behind them (the convoy effect)."""


def starvation_mix(shorts: int = 8, long_burst: int = 10) -> list[Job]:
    """One long 'low' job arriving at t=1 while short 'high' jobs keep arriving every 2 units."""
    jobs: list[Job] = [{"name": "LONG", "arrival": 1, "burst": long_burst, "priority": "low"}]
    jobs += [{"name": f"S{i}", "arrival": 2 * i, "burst": 3, "priority": "high"} for i in range(shorts)]
    return jobs


def _check(jobs: Sequence[Job]) -> list[Job]:
    names = [j["name"] for j in jobs]
    if len(set(names)) != len(names):
        raise ValueError("job names must be unique")
    for job in jobs:
        if job["burst"] <= 0 or job["arrival"] < 0:
            raise ValueError(f"job {job['name']}: burst must be > 0 and arrival >= 0")
        if job.get("priority", "default") not in PRIORITIES:
            raise ValueError(f"job {job['name']}: priority must be one of {PRIORITIES}")
    return sorted(jobs, key=lambda j: (j["arrival"], names.index(j["name"])))


def fcfs(jobs: Sequence[Job], switch_cost: int = 0) -> list[Segment]:
    """First come, first served."""
    t, out = 0, list[Segment]()
    for job in _check(jobs):
        t = max(t, job["arrival"]) + (switch_cost if out else 0)
        out.append((job["name"], t, t + job["burst"]))
        t += job["burst"]
    return out


def _non_preemptive(jobs: Sequence[Job], key: Callable[[Job], Any], switch_cost: int = 0) -> list[Segment]:
    pending = _check(jobs)
    t, out = 0, list[Segment]()
    while pending:
        ready = [j for j in pending if j["arrival"] <= t]
        if not ready:
            t = min(j["arrival"] for j in pending)
            continue
        job = min(ready, key=key)
        pending.remove(job)
        t += switch_cost if out else 0
        out.append((job["name"], t, t + job["burst"]))
        t += job["burst"]
    return out


def sjf(jobs: Sequence[Job], switch_cost: int = 0) -> list[Segment]:
    """Shortest job first, non-preemptive; ties by arrival."""
    return _non_preemptive(jobs, lambda j: (j["burst"], j["arrival"]), switch_cost)


def mlq(jobs: Sequence[Job], switch_cost: int = 0) -> list[Segment]:
    """Static-priority multilevel queue, non-preemptive: RQ's `high, default, low`."""
    return _non_preemptive(jobs, lambda j: (PRIORITIES.index(j.get("priority", "default")), j["arrival"]), switch_cost)


def _preemptive(jobs: Sequence[Job], quanta: Sequence[int | None], switch_cost: int) -> list[Segment]:
    """Levels served highest first; a job runs for its level's quantum (None: to completion), and if not
    done joins the end of the next level down (the last level keeps it), after the arrivals of its slice."""
    pending = deque(_check(jobs))
    left = {j["name"]: j["burst"] for j in pending}
    levels: list[deque[str]] = [deque() for _ in quanta]
    t, out, last = 0, list[Segment](), ""

    def admit(until: int) -> None:
        while pending and pending[0]["arrival"] <= until:
            levels[0].append(pending.popleft()["name"])

    while pending or any(levels):
        admit(t)
        level = next((i for i, q in enumerate(levels) if q), None)
        if level is None:
            t = pending[0]["arrival"]
            continue
        name = levels[level].popleft()
        if last and last != name:
            t += switch_cost
        quantum = quanta[level]
        run = left[name] if quantum is None else min(quantum, left[name])
        out.append((name, t, t + run))
        t += run
        left[name] -= run
        last = name
        admit(t)
        if left[name]:
            levels[min(level + 1, len(levels) - 1)].append(name)
    return out


def rr(jobs: Sequence[Job], quantum: int = 2, switch_cost: int = 0) -> list[Segment]:
    """Round robin; arrivals during a slice queue ahead of the preempted job."""
    if quantum < 1:
        raise ValueError("quantum must be >= 1")
    return _preemptive(jobs, [quantum], switch_cost)


def mfq(jobs: Sequence[Job], quanta: Sequence[int] = (2, 4), switch_cost: int = 0) -> list[Segment]:
    """Multilevel feedback queue: levels with the given quanta, then an FCFS bottom level."""
    return _preemptive(jobs, [*quanta, None], switch_cost)


def metrics(jobs: Sequence[Job], segments: Sequence[Segment]) -> Metrics:
    """Per-job and average waiting/turnaround/response for one schedule."""
    per_job: dict[str, JobTimes] = {}
    switches = sum(1 for a, b in zip(segments, segments[1:], strict=False) if a[0] != b[0])
    for job in jobs:
        mine = [s for s in segments if s[0] == job["name"]]
        if sum(e - s for _, s, e in mine) != job["burst"]:
            raise AssertionError(f"schedule does not run {job['name']} for its burst")
        done = max(e for _, _, e in mine)
        turnaround = done - job["arrival"]
        per_job[job["name"]] = JobTimes(
            completion=done,
            turnaround=turnaround,
            waiting=turnaround - job["burst"],
            response=min(s for _, s, _ in mine) - job["arrival"],
        )

    def avg(values: list[int]) -> float:
        return round(sum(values) / len(values), 3)

    times = list(per_job.values())
    return Metrics(
        avg_waiting=avg([m["waiting"] for m in times]),
        avg_turnaround=avg([m["turnaround"] for m in times]),
        avg_response=avg([m["response"] for m in times]),
        max_waiting=max(m["waiting"] for m in times),
        makespan=max(e for _, _, e in segments),
        switches=switches,
        order=[s[0] for s in segments],
        per_job=per_job,
    )


def simulate(
    jobs: Sequence[Job] | None = None,
    quantum: int = 2,
    switch_cost: int = 0,
    mfq_quanta: Sequence[int] | None = None,
) -> dict[str, Metrics]:
    """Run every algorithm on the same mix, each paying `switch_cost`; MFQ's quanta default to (q, 2q)."""
    mix = list(jobs if jobs is not None else DEFAULT_MIX)
    quanta = tuple(mfq_quanta) if mfq_quanta is not None else (quantum, 2 * quantum)
    schedules = {
        "FCFS": fcfs(mix, switch_cost),
        "SJF": sjf(mix, switch_cost),
        f"RR(q={quantum})": rr(mix, quantum, switch_cost),
        "MFQ": mfq(mix, quanta, switch_cost),
        "MLQ(rq)": mlq(mix, switch_cost),
    }
    return {alg: metrics(mix, seg) for alg, seg in schedules.items()}


def probe(label: str) -> str:
    """A trivial job that returns its label: shows in which order an RQ worker picks jobs."""
    return label
