"""Redis commands and sequential round trips per job, mplab node vs stock SimpleWorker, at several RTTs.

Run: .venv/bin/python benchmarks/netcost.py [--jobs 300] [--rtt 0,1,10]
Two stock SimpleWorkers and one mplab node with two slots drain the same trivial jobs, warm, through mplab's
latency proxy, against a private embedded redis-server (method: workers/netcost.py). The targets (issue 10):
<= 8 round trips per single-task job; node >= 2x two stock SimpleWorkers at +1 ms, >= 1.0x at 0 ms.
"""

from __future__ import annotations

import argparse
import os
import platform

from workers.netcost import WORKER_KINDS, job_cost
from workers.redis_server import embedded_redis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--rtt", default="0,1,10", help="added round-trip times in ms, comma-separated")
    args = parser.parse_args()
    rtts = [float(x) for x in args.rtt.split(",")]
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, {args.jobs} trivial jobs per run")
    print(f"{'worker':7} {'slots':>5} {'batch':>5} {'rtt ms':>6} {'cmds/job':>8} {'RTs/job':>7} {'jobs/s':>8}")
    with embedded_redis() as server:
        for batch in (1, 10):
            for rtt in rtts:
                rates = {}
                for kind in WORKER_KINDS:
                    jobs = args.jobs if batch == 1 else max(1, args.jobs // batch)
                    if rtt >= 10:
                        jobs = max(1, jobs // 5)  # keep the run short at high latency
                    cost = job_cost(server.url, kind, jobs=jobs, batch=batch, rtt_ms=rtt, workers=2)
                    rates[kind] = cost.jobs_per_s
                    print(f"{kind:7} {2:>5} {batch:>5} {rtt:>6g} {cost.commands_per_job:>8.1f} "
                          f"{cost.round_trips_per_job:>7.1f} {cost.jobs_per_s:>8.1f}", flush=True)  # fmt: skip
                ratio = rates["mplab"] / rates["stock"]
                print(f"  node / 2 stock SimpleWorkers, jobs/s at +{rtt:g} ms, batch {batch}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
