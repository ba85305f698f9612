"""The records that cross from the lab to the CLI (and back from a worker node): one home, typed.

A renamed field fails in mypy here and at every reader. Per-experiment measurements stay free-form JSON
(`measurements` is whatever each experiment measured); everything the CLI reads by name is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NotRequired, TypedDict, final

from workers.lab.verdicts import Claim

ParamValue = int | float | str | bool
"""A parameter's value: its default's type (`Experiment.parse_params` coerces to it)."""

Params = Mapping[str, ParamValue]
"""Parameters going in: typed values, or the strings of `-p key=value` (coerced by `parse_params`)."""


class RanOn(TypedDict):
    """Where a worker node ran an experiment: its node name ('' outside a node), host and process."""

    node: str
    host: str
    pid: int


@final
class ExperimentResult(TypedDict):
    """One experiment that ran: the machine, its params, the narrative, measurements and verdicts."""

    name: str
    section: str
    facts: Mapping[str, object]
    """`workers.settings.machine_facts` of the run (Python, start method, cores, platform, host)."""
    params: dict[str, ParamValue]
    elapsed_s: float
    events: list[str]
    """'ms since the start  text', in the order things happened."""
    measurements: dict[str, object]
    claims: list[Claim]
    ran_on: NotRequired[RanOn]
    """Set by a worker node."""
    job_id: NotRequired[str]
    """Set by `--via rq`: the RQ job that carried it."""


@final
class ExperimentFailed(TypedDict):
    """An experiment of a `lab run all` that failed or never ran: why, and no verdicts."""

    name: str
    section: str
    error: str
    events: list[str]
    claims: list[Claim]


Outcome = ExperimentResult | ExperimentFailed
"""One entry of a `lab run all`: a result, or why there is none (tell them apart with `"error" in`)."""

Runner = Callable[[str, Params], ExperimentResult]
"""Runs one experiment by name with its params (in this process, or on a worker node)."""


class IpcRow(TypedDict):
    """One row of the measured IPC table (6.6): a mechanism and its speeds."""

    kind: str
    mechanism: str
    chapter_performance: str
    """The chapter's rating (高/中/低), '-' where it has none."""
    rtt_us: float
    rtt_spread_us: NotRequired[str]
    """'median (min-max)' of the round trips, µs."""
    msgs_per_s_100B: int | None
    MiB_per_s: float | None
    samples_s: NotRequired[dict[str, list[float]]]
    """Seconds per repetition, by measure (kept apart from the table in the report)."""


class NetworkCheck(TypedDict):
    """Distinct messages echoed through Redis by a child, and where that Redis server is."""

    host: str | None
    """None for a unix socket."""
    local: bool
    sent: int
    echoed_intact: int
