"""Speed verdicts are stable: the same claims measured several times in a row get the same verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab_tools import run

RUNS = 3


def _speed_verdicts(result: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {c["claim"]: c["verdict"] for c in result["claims"] if c.get("speed")}


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("queue-vs-pipe", {"rtt_n": 400, "small_n": 3000, "big_n": 10, "repeats": 8}),
        ("ipc-table", {"rtt_n": 400, "small_n": 3000, "big_n": 5, "repeats": 8, "redis": False}),
    ],
)
def test_speed_verdicts_identical_across_runs(tmp_path: Path, name: str, params: dict) -> None:  # type: ignore[type-arg]
    seen = [_speed_verdicts(run(name, tmp_path, **params)) for _ in range(RUNS)]
    assert seen[0], "the experiment has speed claims"
    assert all(s == seen[0] for s in seen), seen


def test_noise_never_turns_a_speed_claim_around() -> None:
    """Load only makes runs slower: a side whose runs are mostly inflated is too close to call, not 'faster'."""
    from workers.lab.verdicts import faster, speed_verdict

    assert faster([1.0, 1.1, 1.0], [2.0, 2.1, 2.0]) == "a"
    assert faster([2.0, 2.1, 2.0], [1.0, 1.1, 1.0]) == "b"
    # the fast side hit by load in two rounds of three: it lost those rounds, but it is not slower
    assert faster([6.4, 153.0, 257.0], [97.0, 100.0, 190.0]) == "tie"
    assert speed_verdict([1.0, 1.2, 1.0, 1.3], [1.1, 1.0, 1.2, 1.05]) == "too-close"
