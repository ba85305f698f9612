"""Verdicts: the words the lab may use about a claim, the record of one, and how speed claims are decided.

A speed claim ("A is faster than B") is decided on repetitions measured in turn (A, B, A, B, ...), so
that a load spike hits both sides. Load only ever makes a run slower, so a side's best runs are its most
faithful ones: A is clearly faster when its median run beats B's *best* run (and the reverse for B);
otherwise the spreads overlap and the claim is *too close to call*.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Literal, NotRequired, TypedDict

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
    """Counts per verdict for a whole run and per chapter section; the experiments that failed."""

    verdicts: dict[str, int]
    sections: dict[str, dict[str, int]]
    errors: list[str]


def summarize(results: list[dict[str, object]]) -> Summary:
    """Count the verdicts of several experiment results, overall and per top-level chapter section."""
    overall: dict[str, int] = {}
    sections: dict[str, dict[str, int]] = {}
    errors = [str(r["name"]) for r in results if "error" in r]
    for r in results:
        for c in r.get("claims", []) or []:  # type: ignore[attr-defined]
            top = str(c["section"]).split(".")[0]
            overall[c["verdict"]] = overall.get(c["verdict"], 0) + 1
            per = sections.setdefault(top, {})
            per[c["verdict"]] = per.get(c["verdict"], 0) + 1
    ordered = dict(sorted(sections.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 99))
    return {"verdicts": overall, "sections": ordered, "errors": errors}


def interleaved(fns: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call every function once per round, `repeats` rounds, rotating who goes first; their samples."""
    names = list(fns)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(max(1, repeats)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out[name].append(fns[name]())
    return out


def spread(samples: list[float], scale: float = 1.0, digits: int = 1) -> str:
    """'median (min-max)' of samples multiplied by `scale`."""
    lo, mid, hi = (round(x * scale, digits) for x in (min(samples), statistics.median(samples), max(samples)))
    return f"{mid} ({lo}-{hi})" if len(samples) > 1 else f"{mid}"


def faster(a: list[float], b: list[float]) -> Literal["a", "b", "tie"]:
    """Which of two timing samples (lower is better) is clearly faster: a's median below b's best, or reverse."""
    if statistics.median(a) < min(b):
        return "a"
    if statistics.median(b) < min(a):
        return "b"
    return "tie"


def speed_verdict(chapter_faster: list[float], chapter_slower: list[float]) -> Verdict:
    """Verdict on 'the first is faster than the second' from their timings (lower is better)."""
    return {"a": "holds", "b": "wrong", "tie": "too-close"}[faster(chapter_faster, chapter_slower)]  # type: ignore[return-value]


def combined(verdicts: list[Verdict]) -> Verdict:
    """One verdict from several measures of the same claim: a majority that no measure contradicts."""
    holds, wrong = verdicts.count("holds"), verdicts.count("wrong")
    if holds * 2 > len(verdicts) and not wrong:
        return "holds"
    if wrong * 2 > len(verdicts) and not holds:
        return "wrong"
    return "too-close"


def speed_table(samples: dict[str, dict[str, list[float]]], measures: dict[str, tuple[str, float, int]]) -> str:
    """'measure: a X (lo-hi) vs b Y (lo-hi) unit; ...' for every measure; per-measure (unit, scale, digits)."""
    parts = []
    for key, (unit, scale, digits) in measures.items():
        sides = " vs ".join(f"{name} {spread(s[key], scale, digits)}" for name, s in samples.items())
        parts.append(f"{key}: {sides} {unit}")
    return "; ".join(parts)
