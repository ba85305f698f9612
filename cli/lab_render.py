"""How `mplab lab` prints results, in English or Chinese: experiment text is never read as rich markup."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.markup import escape
from rich.table import Table

from cli.base import console
from workers.lab import zh
from workers.lab.explain import EXPLAIN
from workers.lab.records import VERDICTS, Claim, Outcome, Summary
from workers.lab.verdicts import summarize
from workers.settings import MachineFacts

VERDICT_STYLE = {
    "holds": "green", "wrong": "red", "outdated": "yellow", "too-close": "cyan", "not-measured": "dim",
}  # fmt: skip
LANGS = ("en", "zh")


def default_lang(env: dict[str, str]) -> str:
    """'zh' when the locale (LC_ALL, LC_MESSAGES, LANG, in POSIX's order) is Chinese, else 'en'."""
    for key in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(key):
            return "zh" if env[key].lower().startswith("zh") else "en"
    return "en"


class Words:
    """The words of one language: headings, verdicts, claims, explanations."""

    def __init__(self, lang: str) -> None:
        self.zh = lang == "zh"

    def ui(self, text: str) -> str:
        return zh.UI.get(text, text) if self.zh else text

    def verdict(self, verdict: str) -> str:
        return zh.VERDICTS.get(verdict, verdict) if self.zh else verdict

    def claim(self, text: str) -> str:
        return zh.claim(text) if self.zh else text

    def description(self, name: str, english: str) -> str:
        return zh.DESCRIPTIONS.get(name, english) if self.zh else english

    def why(self, name: str) -> str | None:
        return (zh.EXPLAIN.get(name) or EXPLAIN.get(name)) if self.zh else EXPLAIN.get(name)


def translate(result: Outcome, lang: str) -> Mapping[str, object]:
    """For --json --lang zh: each claim also as claim_zh/verdict_zh, and the explanation as why_zh."""
    if lang != "zh":
        return result
    words = Words(lang)
    out: dict[str, object] = dict(result)
    out["claims"] = [{**c, "claim_zh": words.claim(c["claim"]), "verdict_zh": words.verdict(c["verdict"])}
                     for c in result["claims"]]  # fmt: skip
    if result["name"] in zh.EXPLAIN:
        out["why_zh"] = zh.EXPLAIN[result["name"]]
    return out


def _facts_line(facts: MachineFacts) -> str:
    return (
        f"Python {facts['python']} · start method {facts['start_method']} · {facts['cores']} cores "
        f"({facts['usable_cores']} usable) · {facts['platform']}"
    )


def render(result: Outcome, lang: str = "en") -> None:
    """One experiment: header, narrative, measurements, claims, and why."""
    words = Words(lang)
    console.rule(f"[bold]{escape(result['name'])}[/bold]  §{escape(result['section'])}")
    if "error" in result:
        console.print(f"[red]error:[/red] {escape(result['error'])}", highlight=False, soft_wrap=True)
        return
    where = result.get("ran_on")
    node = f" · node {where['node']} pid {where['pid']}" if where else ""
    console.print(escape(_facts_line(result["facts"]) + node), style="dim", highlight=False)
    console.print(f"[bold]{words.ui('What happened')}[/bold]")
    for line in result["events"]:
        stamp, _, text = line.strip().partition(" ms  ")
        console.print(f"  [dim]{escape(stamp):>8} ms[/dim]  {escape(text)}", highlight=False, soft_wrap=True)
    measurements = result["measurements"]
    if measurements:
        console.print(f"[bold]{words.ui('Measured')}[/bold]")
        for key, value in measurements.items():
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                console.print(_dict_table(key, value))
            else:
                text = json.dumps(value, ensure_ascii=False, default=str)
                text = text if len(text) < 400 else text[:397] + "..."
                console.print(f"  {escape(key)}: {escape(text)}", highlight=False)
    title = f"{words.ui('Claims')} ({result['elapsed_s']} s)"
    console.print(claims_table(result["claims"], title, lang))
    why = words.why(result["name"])
    if why:
        console.print(f"[bold]{words.ui('Why')}[/bold]  {escape(why)}", highlight=False)
        console.print(f"{words.ui('Code')}: `mplab lab show {escape(result['name'])}`", style="dim", highlight=False)


def _dict_table(title: str, rows: list[dict[str, object]]) -> Table:
    table = Table(title=escape(title), title_justify="left")
    keys = list(dict.fromkeys(k for row in rows for k in row))
    for key in keys:
        table.add_column(escape(key), overflow="fold")
    for row in rows:
        table.add_row(*("-" if row.get(k) is None else escape(str(row.get(k))) for k in keys))
    return table


def claims_table(claims: list[Claim], title: str, lang: str = "en") -> Table:
    words = Words(lang)
    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column(words.ui("claim"), ratio=3, overflow="fold")
    table.add_column("§", no_wrap=True)
    table.add_column(words.ui("verdict"), no_wrap=True)
    table.add_column(words.ui("evidence"), ratio=5, overflow="fold")
    for c in claims:
        style = VERDICT_STYLE.get(c["verdict"], "")
        claim = escape(words.claim(c["claim"]))
        if c.get("scope") == "edge":
            claim = f"[italic]{words.ui('edge case:')}[/italic] {claim}"
        table.add_row(claim, c["section"], f"[{style}]{words.verdict(c['verdict'])}[/{style}]", escape(c["evidence"]))
    return table


def summary_table(summary: Summary, lang: str = "en") -> Table:
    """Counts per verdict of the chapter's claims, overall and per chapter section; edge cases apart."""
    words = Words(lang)
    table = Table(title=words.ui("Verdicts per chapter section"), title_justify="left")
    table.add_column("§")
    for verdict in VERDICTS:
        table.add_column(words.verdict(verdict), justify="right", style=VERDICT_STYLE[verdict])
    for section, counts in summary["sections"].items():
        table.add_row(section, *(str(counts.get(v, 0)) for v in VERDICTS))
    table.add_row(words.ui("all"), *(f"[bold]{summary['verdicts'].get(v, 0)}[/bold]" for v in VERDICTS))
    table.add_row(words.ui("edge case:"), *(str(summary["edge"].get(v, 0)) for v in VERDICTS), style="italic")
    return table


def render_all(results: list[Outcome], total: float, lang: str = "en") -> None:
    """`lab run all`: one line per experiment, the verdict counts, then every claim in one table."""
    words = Words(lang)
    facts = next((r["facts"] for r in results if "error" not in r), None)
    if facts:
        console.print(escape(_facts_line(facts)), style="dim", highlight=False)
    per_exp = Table(title=words.ui("Experiments"), title_justify="left")
    for col in (words.ui("experiment"), "§", words.ui("seconds"), *map(words.verdict, VERDICTS)):
        per_exp.add_column(col)
    claims: list[Claim] = []
    for r in results:
        verdicts = [c["verdict"] for c in r["claims"]]
        counts = [str(verdicts.count(v)) for v in VERDICTS]
        seconds = f"[red]error: {escape(r['error'])}[/red]" if "error" in r else str(r["elapsed_s"])
        per_exp.add_row(r["name"], r["section"], seconds, *counts)
        claims.extend(r["claims"])
    console.print(per_exp)
    summary = summarize(results)
    console.print(summary_table(summary, lang))
    failed = summary["errors"]
    done = len(results) - len(failed)
    line = (
        f"{len(claims)} {words.ui('verdicts from')} {done} {words.ui('of')} {len(results)} "
        f"{words.ui('experiments in')} {total:.1f} s"
    )
    fail = f"; [red]{words.ui('failed')}: {escape(', '.join(failed))}[/red]" if failed else ""
    console.print(line + fail, highlight=False)
    console.print(claims_table(claims, f"{words.ui('Claims')}: {len(claims)} ({total:.1f} s)", lang))
