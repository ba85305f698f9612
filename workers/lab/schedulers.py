"""Section 3.3.2: the scheduling algorithms simulated on one job mix, and RQ's ordered queues as a MLQ."""

from __future__ import annotations

import signal
from typing import Any

from tasks import scheduling
from workers.lab.base import Lab, experiment

# -- 3.3.2 scheduling ------------------------------------------------------------------------------------


@experiment(
    "scheduling",
    "3.3.2",
    "FCFS/SJF/RR/MFQ simulated on a job mix (avg waiting/turnaround), and RQ's high/default/low as a MLQ",
    params={"quantum": 2, "switch_cost": 0, "shorts": 8},
    limits={"quantum": (1, 20), "switch_cost": (0, 10), "shorts": (1, 50)},
    param_help={
        "quantum": "RR time slice (units)",
        "switch_cost": "units lost per RR context switch",
        "shorts": "short jobs in the starvation mix",
    },
)
def schedule(lab: Lab) -> None:
    rep = lab.report
    quantum, cost = int(lab.p("quantum")), int(lab.p("switch_cost"))
    if quantum < 1:
        from workers.errors import ConfigError

        raise ConfigError("quantum must be >= 1")
    mix = scheduling.DEFAULT_MIX
    res = scheduling.simulate(mix, quantum, cost)
    starve = scheduling.simulate(scheduling.starvation_mix(int(lab.p("shorts"))), quantum, cost)
    rr_name = f"RR(q={quantum})"
    mix_text = ", ".join(f"{j['name']}(arr {j['arrival']}, burst {j['burst']}, {j['priority']})" for j in mix)
    rep.event(f"job mix: {mix_text}")
    for alg, m in res.items():
        rep.event(
            f"{alg:9} order {''.join(m['order'])}: avg waiting {m['avg_waiting']}, turnaround "
            f"{m['avg_turnaround']}, response {m['avg_response']}, switches {m['switches']}"
        )
    rep.measure("default_mix", {a: {k: v for k, v in m.items() if k != "per_job"} for a, m in res.items()})
    rep.measure("starvation_mix_long_job", {a: m["per_job"]["LONG"] for a, m in starve.items()})

    f, s, r, q = res["FCFS"], res["SJF"], res[rr_name], res["MFQ"]
    rep.claim(
        "FCFS is simple but jobs may wait long (short jobs stuck behind long ones)",
        "holds" if f["avg_waiting"] > s["avg_waiting"] else "wrong",
        f"avg waiting FCFS {f['avg_waiting']} vs SJF {s['avg_waiting']} on the same mix",
    )
    best = min(m["avg_waiting"] for m in res.values())
    long_sjf, long_fcfs = starve["SJF"]["per_job"]["LONG"], starve["FCFS"]["per_job"]["LONG"]
    rep.claim(
        "SJF favours short jobs and can starve long ones",
        "holds" if s["avg_waiting"] == best and long_sjf["waiting"] > long_fcfs["waiting"] else "wrong",
        f"SJF has the lowest avg waiting ({s['avg_waiting']}); with short jobs arriving every 2 units the "
        f"long "
        f"job waits {long_sjf['waiting']} under SJF vs {long_fcfs['waiting']} under FCFS",
    )
    fair = r["avg_response"] < f["avg_response"] and r["switches"] > f["switches"]
    rep.claim(
        "RR is fair (every job runs soon) but pays for switching",
        "holds" if fair else "wrong",
        f"avg response RR {r['avg_response']} vs FCFS {f['avg_response']}; switches {r['switches']} vs "
        f"{f['switches']}; avg turnaround {r['avg_turnaround']} vs {f['avg_turnaround']} (switch cost "
        f"{cost})",
    )
    responsive = q["avg_response"] <= r["avg_response"]
    cheaper = q["switches"] <= r["switches"]
    rep.claim(
        "MFQ combines the algorithms' advantages",
        "holds" if responsive and cheaper else "wrong",
        (
            f"MFQ (quanta {quantum}, {2 * quantum}, then FCFS) responds as fast as RR or faster (avg response "
            f"{q['avg_response']} vs RR {r['avg_response']}, FCFS {f['avg_response']}) with no more switches "
            f"(MFQ {q['switches']}, RR {r['switches']}): RR's responsiveness with fewer of its switches, and "
            f"short jobs first like SJF without knowing burst times; every algorithm paid {cost} per switch"
        )
        if responsive and cheaper
        else (
            f"MFQ avg response {q['avg_response']} vs RR {r['avg_response']}, switches {q['switches']} vs RR "
            f"{r['switches']}: it lost {'responsiveness' if not responsive else 'on switching'} to RR "
            f"(every algorithm paid {cost} per switch)"
        ),
    )
    _rq_order(lab, starve)


def _rq_order(lab: Lab, starve: dict[str, scheduling.Metrics]) -> None:
    """Drain real RQ queues (fakeredis, in-process SimpleWorker) and compare with the MLQ simulation."""
    rep = lab.report
    long_mlq = starve["MLQ(rq)"]["per_job"]["LONG"]
    try:
        order = rq_drain_order()
    except (ImportError, ValueError):  # no fakeredis; or not the main thread (signal handlers)
        order = []
    if order:
        rep.event(f"RQ SimpleWorker on queues high,default,low ran jobs enqueued low,default,high,... as {order}")
    rep.measure("rq_execution_order", order)
    strict = order == sorted(order, key=lambda n: scheduling.PRIORITIES.index(n.split("-")[0]))
    rep.claim(
        "RQ's ordered queues (high, default, low) are a multilevel queue, not an MFQ",
        "holds" if order and strict else "not-measured",
        (f"a worker ran {order}: always the first non-empty queue; " if order else "fakeredis not installed; ")
        + "jobs never change queue (no feedback) and run to completion (no preemption), so a 'low' job can "
        f"starve: simulated, the long 'low' job waits {long_mlq['waiting']} units behind the 'high' stream",
        "3.3.2",
    )


def rq_drain_order() -> list[str]:
    """Enqueue 2 jobs per queue in low->high order into an in-memory Redis and drain with a SimpleWorker."""
    import fakeredis
    from rq import Queue, SimpleWorker

    conn = fakeredis.FakeRedis()
    queues = {name: Queue(name, connection=conn) for name in scheduling.PRIORITIES}
    jobs: list[Any] = []
    for i in range(2):
        for name in reversed(scheduling.PRIORITIES):
            jobs.append(queues[name].enqueue(scheduling.probe, f"{name}-{i}"))
    worker = SimpleWorker([queues[n] for n in scheduling.PRIORITIES], connection=conn)
    # work() installs SIGTERM/SIGINT handlers in this process; put ours back, or every child forked
    # later would inherit a handler that raises rq's StopRequested instead of terminating.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    for job in jobs:
        job.refresh()
    done = sorted(jobs, key=lambda j: j.ended_at.timestamp() if j.ended_at else float("inf"))
    order = [str(j.return_value()) for j in done]
    conn.flushall()
    conn.close()
    return order
