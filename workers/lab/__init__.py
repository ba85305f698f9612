"""`mplab lab`: every chapter section as a runnable experiment with a verdict on the chapter's claims.

Experiments are declared in the modules listed in `MODULES` with `@experiment(...)` (see
`workers.lab.base`) and run by name with `run(name, params, settings)`, which returns the JSON-able
`ExperimentResult` (`workers.lab.records`) the CLI renders and an RQ job (`workers.lab.jobs.run_experiment`)
returns from a worker node.

Experiments never resolve Redis: one that measures over it (`Experiment.redis_param`, see `wants_redis`)
uses `settings.redis_url` as given, which the caller resolved (the CLI: --redis-url, the `redis up` server
or an embedded one for that experiment only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

# Import-light on purpose: a spawned child that imports `workers.lab.probe` (the no-op target the
# start-method costs are measured with) must not pay for psutil and every experiment module.
if TYPE_CHECKING:
    from workers.lab.base import Experiment
    from workers.lab.records import ExperimentFailed, ExperimentResult, Outcome, Params, Runner
    from workers.settings import Settings

__all__ = ["all_experiments", "check_params", "get", "run", "run_many", "wants_redis", "MODULES"]

MODULES: tuple[str, ...] = (
    "identity", "schedulers", "special", "zombies", "reaping", "daemon", "creation", "startup",
    "queues", "pipes", "sync", "ipc_table", "tickets", "pool", "pool_usage", "subproc",
    "locked_pipe", "pool_maxtasks", "memory", "returncode", "contention",
)  # fmt: skip
"""Modules under workers.lab that declare experiments (imported on first use)."""


def _load() -> dict[str, Experiment]:
    import importlib

    from workers.lab import base

    for module in MODULES:
        importlib.import_module(f"workers.lab.{module}")
    return base.REGISTRY


def _section_key(exp: Experiment) -> tuple[int, ...]:
    return tuple(int(part) for part in exp.section.split("."))


def all_experiments() -> list[Experiment]:
    """Every experiment, in chapter order."""
    return sorted(_load().values(), key=_section_key)


def get(name: str) -> Experiment:
    """The experiment called `name`; NotFound otherwise."""
    from workers.errors import NotFound

    registry = _load()
    try:
        return registry[name]
    except KeyError:
        known = ", ".join(e.name for e in all_experiments())
        raise NotFound(f"no experiment {name!r}; experiments: {known}") from None


def run(name: str, params: Params, settings: Settings, redis_note: str = "") -> ExperimentResult:
    """Run one experiment in this process and return its result.

    `redis_note` is what the caller said about `settings.redis_url` (where that Redis is, or why there is
    none), for the report of an experiment that measures over Redis.
    """
    from workers.lab.base import Lab, Report, stop_mp_helpers
    from workers.lab.children import experiment_children

    exp = get(name)
    parsed = exp.parse_params(params)
    report = Report(exp.name, exp.section, settings.start_method)
    try:
        with experiment_children():
            exp.run(Lab(settings, parsed, report, redis_note))
    finally:
        stop_mp_helpers()
    return report.result(parsed)


def wants_redis(name: str, params: Params) -> bool:
    """True when experiment `name`, with these params, measures over Redis (its caller resolves one)."""
    exp = get(name)
    return exp.redis_param is not None and bool(exp.parse_params(params)[exp.redis_param])


def check_params(names: list[str], params: Params) -> None:
    """ConfigError unless every param is declared by at least one of the named experiments."""
    from workers.errors import ConfigError

    exps = [get(name) for name in names]
    unknown = sorted(set(params) - {key for exp in exps for key in exp.params})
    if unknown:
        raise ConfigError(f"no experiment declares parameter(s) {', '.join(unknown)}")
    for exp in exps:
        exp.parse_params({k: v for k, v in params.items() if k in exp.params})


def run_many(
    names: list[str],
    params: Params,
    runner: Runner,
    progress: Callable[[str, int], None] | None = None,
) -> list[Outcome]:
    """Run several experiments (a param applies to every experiment declaring it).

    Results gathered so far are never lost: a failing experiment becomes an entry with an "error" (a
    LabError's message, or the type and message of anything unexpected) and the others still run; on
    Ctrl-C the experiments not run yet become entries saying so.
    """
    check_params(names, params)
    results: list[Outcome] = []
    for i, name in enumerate(names):
        if progress is not None:
            progress(name, i)
        exp = get(name)
        mine = {k: v for k, v in params.items() if k in exp.params}
        try:
            results.append(runner(name, mine))
        except KeyboardInterrupt:
            results.append(_failed(name, exp.section, "interrupted while running"))
            results.extend(_failed(get(n).name, get(n).section, "interrupted before it ran") for n in names[i + 1 :])
            break
        except Exception as exc:  # noqa: BLE001 - one experiment's failure must not lose the others' results
            from workers.errors import LabError

            why = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            results.append(_failed(name, exp.section, why))
    return results


def _failed(name: str, section: str, error: str) -> ExperimentFailed:
    return {"name": name, "section": section, "error": error, "events": [], "claims": []}
