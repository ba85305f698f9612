"""Shared by the tests/test_lab_*.py files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import workers.lab as lab
from workers.lab.base import VERDICTS
from workers.settings import Settings


def run(
    name: str, tmp_path: Path, redis_url: str | None = None, start_method: str | None = None, **params: Any
) -> dict[str, Any]:
    settings = Settings(state_dir=tmp_path / "state", redis_url=redis_url)
    if start_method is not None:
        settings = settings.with_(start_method=start_method)
    result = lab.run(name, params, settings)
    assert result["facts"]["start_method"] == settings.start_method
    assert result["facts"]["start_method"] and result["facts"]["python"] and result["facts"]["cores"]
    assert result["claims"], "every experiment judges at least one claim"
    for claim in result["claims"]:
        assert claim["verdict"] in VERDICTS
        assert claim["evidence"]
    return result


def verdict(result: dict[str, Any], text: str) -> str:
    """The verdict of the claim containing `text`."""
    found = [c["verdict"] for c in result["claims"] if text in c["claim"]]
    assert found, f"no claim containing {text!r}: {[c['claim'] for c in result['claims']]}"
    return found[0]
