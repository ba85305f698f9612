"""What every experiment shares: its declaration, the report it fills in, and process hygiene helpers.

An experiment is a function `run(lab: Lab) -> None` that creates processes, watches what happens and
records it in `lab.report`: narrative events (with pids, states, timings), measurements, and a verdict
on each of the chapter's claims it tests. `Report.result()` is the `ExperimentResult` the CLI renders and
an RQ job returns.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from workers.errors import ConfigError
from workers.lab.records import VERDICTS, Claim, ExperimentResult, Params, ParamValue, Scope, Verdict
from workers.settings import Settings, machine_facts

__all__ = ["VERDICTS", "Claim", "Verdict"]


@dataclass
class Report:
    """The observed events, measurements and verdicts of one experiment run."""

    name: str
    section: str
    start_method: str
    timeline: list[tuple[float, str]] = field(default_factory=list)
    measurements: dict[str, object] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    t0: float = field(default_factory=time.perf_counter)
    wall0: float = field(default_factory=time.time)

    def event(self, text: str, at: float | None = None, wall: float | None = None) -> None:
        """A narrative line stamped with when it happened: `at` (a time.perf_counter() value) or `wall` (a
        time.time() value, e.g. sent by a child) taken at the moment; now if neither is given."""
        if wall is not None:
            at = self.t0 + (wall - self.wall0)
        self.timeline.append((time.perf_counter() if at is None else at, text))

    @property
    def events(self) -> list[str]:
        """The narrative in the order things happened, each line 'ms since the start  text'."""
        ordered = sorted(enumerate(self.timeline), key=lambda item: (item[1][0], item[0]))
        return [f"{(at - self.t0) * 1000:8.1f} ms  {text}" for _, (at, text) in ordered]

    def measure(self, key: str, value: Any) -> None:
        self.measurements[key] = value

    def claim(
        self,
        claim: str,
        verdict: Verdict,
        evidence: str,
        section: str | None = None,
        scope: Scope = "chapter",
        speed: bool = False,
    ) -> None:
        """Record the verdict on one of the chapter's claims (or, scope 'edge', on a case beyond its setup);
        `speed` marks a verdict decided by timings (which may legitimately be too close to call)."""
        assert verdict in VERDICTS, verdict
        record: Claim = {
            "claim": claim,
            "section": section or self.section,
            "verdict": verdict,
            "evidence": evidence,
            "scope": scope,
        }
        if speed:
            record["speed"] = True
        self.claims.append(record)

    def edge(self, claim: str, verdict: Verdict, evidence: str, section: str | None = None) -> None:
        """A verdict on a case the chapter's own code does not use (labelled, never against the chapter)."""
        self.claim(claim, verdict, evidence, section, scope="edge")

    def result(self, params: dict[str, ParamValue]) -> ExperimentResult:
        return {
            "name": self.name,
            "section": self.section,
            "facts": machine_facts(self.start_method),
            "params": params,
            "elapsed_s": round(time.perf_counter() - self.t0, 3),
            "events": self.events,
            "measurements": self.measurements,
            "claims": self.claims,
        }


@dataclass
class Lab:
    """What an experiment's run function gets: settings, the explicit context, params and the report."""

    settings: Settings
    params: dict[str, ParamValue]
    report: Report
    redis_note: str = ""
    """What the caller said about `settings.redis_url`: where that Redis is, or why there is none."""

    @property
    def method(self) -> str:
        return self.settings.start_method

    def ctx(self, method: str | None = None) -> Any:
        """The explicit multiprocessing context (the run's start method unless another is named)."""
        return mp.get_context(method or self.method)

    @property
    def parentage_method(self) -> str:
        """The start method for phenomena of OS parentage (zombies, reaping, getppid): see `parentage_method`."""
        return parentage_method(self.method)

    def parentage_note(self) -> str:
        """Which start method the parentage children use, and why when it is not the run's."""
        used = self.parentage_method
        if used == self.method:
            return f"children started with {used!r} (the run's start method)"
        return (
            f"children started with {used!r}, not the run's {self.method!r}: with {self.method!r} a "
            f"ctx.Process child is forked by the fork server, which is its OS parent and reaps it"
        )

    def p(self, key: str) -> Any:
        return self.params[key]


RunFn = Callable[[Lab], None]


@dataclass(frozen=True)
class Experiment:
    """One runnable section of the chapter."""

    name: str
    section: str
    description: str
    run: RunFn
    params: dict[str, ParamValue] = field(default_factory=dict)
    param_help: dict[str, str] = field(default_factory=dict)
    runs_in_node: bool = True
    node_note: str = ""
    limits: dict[str, tuple[float, float]] = field(default_factory=dict)
    redis_param: str | None = None
    """The bool parameter that makes it measure over Redis (at `settings.redis_url`, resolved by the caller)."""

    def parse_params(self, given: Params) -> dict[str, ParamValue]:
        """Defaults overridden by `given`, each coerced to its default's type and range; ConfigError otherwise."""
        out = dict(self.params)
        for key, raw in given.items():
            if key not in self.params:
                known = ", ".join(sorted(self.params)) or "none"
                raise ConfigError(f"experiment {self.name!r} has no parameter {key!r} (parameters: {known})")
            out[key] = coerce(key, raw, self.params[key], self.limits.get(key))
        return out

    def describe_param(self, key: str) -> str:
        """'key=default (lo..hi): help' for `lab list` and `lab show`."""
        lo_hi = self.limits.get(key)
        where = f" ({fmt_number(lo_hi[0])}..{fmt_number(lo_hi[1])})" if lo_hi else ""
        return f"{key}={self.params[key]}{where}" + (f": {self.param_help[key]}" if key in self.param_help else "")


def fmt_number(x: float) -> str:
    return f"{int(x)}" if float(x).is_integer() else f"{x:g}"


def coerce(
    key: str, raw: str | ParamValue, default: ParamValue, limits: tuple[float, float] | None = None
) -> ParamValue:
    """Turn a `key=value` string into the type of the parameter's default, within its limits."""
    value = _typed(key, raw, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value
    if not math.isfinite(value):
        raise ConfigError(f"parameter {key}={raw!r}: must be a finite number")
    lo, hi = limits if limits is not None else (0, math.inf)
    if not lo <= value <= hi:
        raise ConfigError(f"parameter {key}={raw!r}: must be between {fmt_number(lo)} and {fmt_number(hi)}")
    return value


def _typed(key: str, raw: str | ParamValue, default: ParamValue) -> ParamValue:
    if not isinstance(raw, str):
        if isinstance(default, float) and isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        if type(raw) is type(default):
            return raw
        raw = str(raw)
    try:
        if isinstance(default, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(default, int):
            value: ParamValue = int(raw)
        elif isinstance(default, float):
            value = float(raw)
        else:
            return raw
    except ValueError:
        raise ConfigError(f"parameter {key}={raw!r}: expected {type(default).__name__}") from None
    return value


# -- helpers shared by experiments ---------------------------------------------------------------------


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs"


def parentage_method(method: str) -> str:
    """`method`, except forkserver becomes fork where fork exists.

    Under forkserver a `ctx.Process` child is forked by the fork server: the fork server is its OS
    parent (its getppid()), waits for it, and so no zombie of it ever reaches the creating process.
    Experiments about parentage use fork then, so that the creator really is the parent.
    """
    if method == "forkserver" and "fork" in mp.get_all_start_methods():
        return "fork"
    return method


def os_parent(pid: int) -> int | None:
    """The OS parent pid of `pid` (None if it no longer exists)."""
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None


def describe_pid(pid: int | None) -> str:
    """`pid N (name)`, this process and multiprocessing's fork server named as such; 'unknown' for None."""
    if pid is None:
        return "unknown (already reaped by someone else)"
    if pid == os.getpid():
        return f"pid {pid} (this process)"
    try:
        proc = psutil.Process(pid)
        name = proc.name()
        cmdline = " ".join(proc.cmdline())
    except psutil.Error:
        return f"pid {pid}"
    if "multiprocessing.forkserver import main" in cmdline:
        return f"pid {pid} (the multiprocessing fork server)"
    return f"pid {pid} ({name})"


def status_of(pid: int) -> str:
    """psutil's status of `pid`, or 'gone'."""
    try:
        return str(psutil.Process(pid).status())
    except psutil.NoSuchProcess:
        return "gone"


def wait_status(pid: int, wanted: set[str], timeout: float) -> tuple[str, float]:
    """Poll until `pid`'s status is one of `wanted` (or 'gone'); return (status, seconds waited)."""
    start = time.perf_counter()
    status = status_of(pid)
    while status not in wanted and time.perf_counter() - start < timeout:
        time.sleep(0.005)
        status = status_of(pid)
    return status, time.perf_counter() - start


def wait_gone(pid: int, timeout: float) -> tuple[bool, float]:
    """Wait until `pid` no longer exists (a zombie still exists); return (gone, seconds)."""
    status, waited = wait_status(pid, {"gone"}, timeout)
    return status == "gone", waited


def kill_and_forget(pid: int) -> None:
    """SIGKILL a process we may not be the parent of (its adopter reaps it)."""
    with contextlib.suppress(psutil.Error, OSError):
        psutil.Process(pid).kill()


def stop_mp_helpers() -> None:
    """Stop the forkserver and resource-tracker processes multiprocessing started, so none outlive a run."""
    from multiprocessing import forkserver, resource_tracker

    for helper in (forkserver._forkserver, resource_tracker._resource_tracker):
        stop = getattr(helper, "_stop", None)  # private, but the only way to stop them (CPython's own tests)
        if stop is not None:
            with contextlib.suppress(Exception):
                stop()


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn`."""
    out = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def pid_line(label: str) -> str:
    return f"{label}: pid {os.getpid()}, ppid {os.getppid()}"


REGISTRY: dict[str, Experiment] = {}


def experiment(
    name: str,
    section: str,
    description: str,
    params: dict[str, ParamValue] | None = None,
    param_help: dict[str, str] | None = None,
    runs_in_node: bool = True,
    node_note: str = "",
    limits: dict[str, tuple[float, float]] | None = None,
    redis_param: str | None = None,
) -> Callable[[RunFn], RunFn]:
    """Register a run function as the experiment `name` for chapter section `section`.

    Every numeric parameter needs its (lo, hi) in `limits`: a parameter without a finite range could
    ask for hours of work or more memory than the machine has. `redis_param` names the bool parameter
    that, when true, makes the experiment measure over Redis (its caller then resolves one).
    """

    def register(fn: RunFn) -> RunFn:
        if name in REGISTRY:
            raise ValueError(f"experiment {name!r} registered twice")
        if redis_param is not None and not isinstance((params or {}).get(redis_param), bool):
            raise ValueError(f"experiment {name!r}: redis_param {redis_param!r} is not a bool parameter")
        for key, default in (params or {}).items():
            numeric = isinstance(default, int | float) and not isinstance(default, bool)
            if numeric and (key not in (limits or {}) or not all(map(math.isfinite, (limits or {})[key]))):
                raise ValueError(f"experiment {name!r}: numeric parameter {key!r} has no finite limits")
        REGISTRY[name] = Experiment(
            name,
            section,
            description,
            fn,
            dict(params or {}),
            dict(param_help or {}),
            runs_in_node,
            node_note,
            dict(limits or {}),
            redis_param,
        )
        return fn

    return register
