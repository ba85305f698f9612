"""The pure scheduling simulator (section 3.3.2)."""

from __future__ import annotations

import pytest

from tasks import scheduling


def test_fcfs_runs_in_arrival_order_and_averages() -> None:
    res = scheduling.simulate(scheduling.DEFAULT_MIX)
    fcfs = res["FCFS"]
    assert fcfs["order"] == ["A", "B", "C", "D", "E"]
    # A waits 0, B 7, C 10, D 18, E 22 -> 57 / 5
    assert fcfs["avg_waiting"] == pytest.approx(11.4)
    assert fcfs["avg_turnaround"] == pytest.approx(11.4 + (8 + 4 + 9 + 5 + 2) / 5)


def test_sjf_beats_fcfs_and_starves_the_long_job() -> None:
    res = scheduling.simulate(scheduling.DEFAULT_MIX)
    assert res["SJF"]["avg_waiting"] < res["FCFS"]["avg_waiting"]
    starve = scheduling.simulate(scheduling.starvation_mix(8))
    assert starve["SJF"]["per_job"]["LONG"]["waiting"] > starve["FCFS"]["per_job"]["LONG"]["waiting"]


def test_rr_every_segment_within_quantum_and_switch_cost_delays() -> None:
    segs = scheduling.rr(scheduling.DEFAULT_MIX, quantum=3)
    assert all(end - start <= 3 for _, start, end in segs)
    free = scheduling.metrics(scheduling.DEFAULT_MIX, segs)
    costly = scheduling.metrics(scheduling.DEFAULT_MIX, scheduling.rr(scheduling.DEFAULT_MIX, 3, switch_cost=1))
    assert costly["makespan"] > free["makespan"]


def test_mfq_demotes_and_mlq_is_strict_priority() -> None:
    mfq = scheduling.mfq([{"name": "L", "arrival": 0, "burst": 10, "priority": "low"}], quanta=(2, 4))
    assert [e - s for _, s, e in mfq] == [2, 4, 4]
    order = scheduling.metrics(scheduling.DEFAULT_MIX, scheduling.mlq(scheduling.DEFAULT_MIX))["order"]
    assert order == ["A", "D", "E", "B", "C"]  # A runs first (alone), then high, default, low


def test_bad_jobs_rejected() -> None:
    with pytest.raises(ValueError):
        scheduling.fcfs([{"name": "x", "arrival": 0, "burst": 0}])
    with pytest.raises(ValueError):
        scheduling.rr(scheduling.DEFAULT_MIX, quantum=0)
