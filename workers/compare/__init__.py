"""`mplab compare`: the same workloads serial, in-host (Process, Pool, subprocess) and through RQ nodes.

Modules: `plan` (what runs, options and their ranges), `runner` (one run: isolation, start, clean-up),
`measure` (every workload), `rounds` (interleaved rounds, paired speedups, the physical-limit guard),
`local` / `remote` (the modes), `latency` (the RQ modes behind a delaying proxy), `isolation` (its
footprint in Redis), `report` (crossover, batch size K, targets), `tickets` (the sale), `records` (what a
run produces); it starts processes with `workers.procs`. The package exports only the public API below.
"""

from workers.compare.plan import MAX_NODE_POOL, MAX_NODES, MAX_RTTS, Options, Plan
from workers.compare.records import Result
from workers.compare.runner import run

__all__ = ["MAX_NODES", "MAX_NODE_POOL", "MAX_RTTS", "Options", "Plan", "Result", "run"]
