"""`--lang zh` (and a Chinese locale) gives every claim, verdict and explanation in Chinese."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import workers.lab as lab
from cli.lab import app
from cli.lab_render import default_lang
from workers.lab import explain, zh
from workers.lab.records import VERDICTS

runner = CliRunner()
LAB = Path(lab.__file__).parent


def _claim_texts() -> set[str]:
    """Every claim text the experiments can record: the first argument of each .claim()/.edge() call."""
    texts: set[str] = set()
    for path in LAB.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            t.id: node.value.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for t in node.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
                if node.func.attr not in ("claim", "edge") or path.name == "base.py":
                    continue
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    texts.add(arg.value)
                elif isinstance(arg, ast.Name) and arg.id in names:
                    texts.add(names[arg.id])
    return texts


def test_every_claim_verdict_and_explanation_has_chinese() -> None:
    texts = _claim_texts()
    assert len(texts) > 90
    assert sorted(texts - set(zh.CLAIMS)) == []
    assert set(VERDICTS) == set(zh.VERDICTS)
    names = {e.name for e in lab.all_experiments()}
    assert names <= set(zh.EXPLAIN) and names <= set(explain.EXPLAIN) and names <= set(zh.DESCRIPTIONS)


def test_lang_zh_output(tmp_path: Path) -> None:
    res = runner.invoke(app, ["run", "isolation", "--lang", "zh"])
    assert res.exit_code == 0, res.output
    assert "子进程得到数据的独立副本" in res.output and "成立" in res.output and "原因" in res.output
    data = json.loads(runner.invoke(app, ["run", "isolation", "--lang", "zh", "--json"]).output)
    assert data["claims"][0]["verdict_zh"] == "成立" and data["why_zh"]
    assert runner.invoke(app, ["run", "isolation", "--lang", "fr"]).exit_code == 2


def test_locale_decides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_lang({"LANG": "zh_CN.UTF-8"}) == "zh"
    assert default_lang({"LANG": "zh_CN.UTF-8", "LC_ALL": "C"}) == "en"
    assert default_lang({}) == "en"
    monkeypatch.setenv("LANG", "zh_CN.UTF-8")
    res = runner.invoke(app, ["show", "zombie"])
    assert res.exit_code == 0 and "僵尸" in res.output
