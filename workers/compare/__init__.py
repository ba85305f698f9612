"""`mplab compare`: the same workloads serial, in-host (Process, Pool, subprocess) and through RQ nodes.

Modules: `plan` (what runs, options and their ranges), `runner` (one run: isolation, start, clean-up),
`measure` (every workload), `rounds` (interleaved rounds, paired speedups, the physical-limit guard),
`local` / `remote` (the modes), `latency` (the RQ modes behind a delaying proxy), `isolation` (its
footprint in Redis), `report` (crossover, batch size K, targets), `tickets` (the sale), `records` (what a
run produces); it starts processes with `workers.procs`.

The public API: `plan.Options` (and its limits), `runner.run`, `records.Result`. This file imports
nothing, so no module of the package depends on the package itself.
"""
