"""Verdicts: how speed claims are decided, and the counts of a run (the words and the record of one claim
are in `workers.lab.records`).

A speed claim ("A is faster than B") is decided on repetitions measured in rounds (A, B; B, A; ...), so
that both sides of a round see the same load on the machine. A is clearly faster when three views agree:
it beat B in every round but one (one in four from 8 rounds on), its median run beat B's median run, and
its best run beat B's best run. Load only ever makes runs slower, so it cannot make the slower side's
best run the faster one: noise can blur a claim into *too close to call*, never turn it around.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Literal

from workers.lab.records import Outcome, Summary, Verdict


def summarize(results: Sequence[Outcome]) -> Summary:
    """Count the verdicts of several experiment results, overall and per top-level chapter section."""
    overall: dict[str, int] = {}
    edge: dict[str, int] = {}
    sections: dict[str, dict[str, int]] = {}
    errors = [r["name"] for r in results if "error" in r]
    for r in results:
        for c in r["claims"]:
            if c["scope"] == "edge":
                edge[c["verdict"]] = edge.get(c["verdict"], 0) + 1
                continue
            top = c["section"].split(".")[0]
            overall[c["verdict"]] = overall.get(c["verdict"], 0) + 1
            per = sections.setdefault(top, {})
            per[c["verdict"]] = per.get(c["verdict"], 0) + 1
    ordered = dict(sorted(sections.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 99))
    return {"verdicts": overall, "sections": ordered, "edge": edge, "errors": errors}


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


def wins(a: list[float], b: list[float]) -> int:
    """In how many rounds a (lower is better) beat b; a[i] and b[i] were measured in the same round."""
    return sum(x < y for x, y in zip(a, b, strict=True))


def faster(a: list[float], b: list[float]) -> Literal["a", "b", "tie"]:
    """Which of two paired samples (lower is better) is clearly faster: rounds, medians and bests agree."""
    rounds = len(a)
    need = max(rounds - max(1, rounds // 4), rounds // 2 + 1)
    med_a, med_b = statistics.median(a), statistics.median(b)
    if wins(a, b) >= need and med_a < med_b and min(a) < min(b):
        return "a"
    if wins(b, a) >= need and med_b < med_a and min(b) < min(a):
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


def lead(verdict: Verdict, a: str, sa: list[float], b: str, sb: list[float]) -> str:
    """How a speed verdict was reached, in words: who won how many of the rounds."""
    rounds = len(sa)
    if verdict == "holds":
        return f"{a} was faster in {wins(sa, sb)} of {rounds} rounds"
    if verdict == "wrong":
        return f"{b} was faster in {wins(sb, sa)} of {rounds} rounds"
    return f"too close to call: {a} won {wins(sa, sb)} and {b} {wins(sb, sa)} of {rounds} rounds"


def rounds_won(a: str, sa: dict[str, list[float]], sb: dict[str, list[float]]) -> str:
    """'measure: A faster in w of n rounds' for every measure two samples share."""
    return "; ".join(f"{key}: {a} faster in {wins(sa[key], sb[key])} of {len(sa[key])} rounds" for key in sa)
