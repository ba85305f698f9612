"""The records that cross from the lab to the CLI (and back from a worker node): one home, typed.

A renamed field fails in mypy here and at every reader. Per-experiment measurements stay free-form JSON
(`measurements` is whatever each experiment measured); everything the CLI reads by name is declared.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal, NotRequired, TypedDict, final

from workers.settings import MachineFacts

Verdict = Literal["holds", "wrong", "outdated", "too-close", "not-measured"]
VERDICTS: tuple[Verdict, ...] = ("holds", "wrong", "outdated", "too-close", "not-measured")
Scope = Literal["chapter", "edge"]


class Claim(TypedDict):
    """One verdict: the chapter's claim, where it is, what was decided, and the observation behind it.

    scope 'chapter' judges the chapter's own setup; 'edge' is a case the chapter does not use, labelled
    as such and never counted against the chapter's claim.
    """

    claim: str
    section: str
    verdict: Verdict
    evidence: str
    scope: Scope
    speed: NotRequired[bool]


class Summary(TypedDict):
    """Counts per verdict of the chapter's claims, for a whole run and per chapter section; the edge cases'
    counts apart (they never count against the chapter); the experiments that failed."""

    verdicts: dict[str, int]
    sections: dict[str, dict[str, int]]
    edge: dict[str, int]
    errors: list[str]


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
    facts: MachineFacts
    """Where it ran: Python, start method, cores, platform, host."""
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
