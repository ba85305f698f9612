"""Section 6.5: the ticket sale is `mplab tickets local`; the lab lists it and calls into it if present."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from workers.lab.base import Lab, experiment

ENGINE = "workers.tickets.engine"
"""The ticket issue's engine module (`run_local(settings, stock=, buyers=, mode=, window=)`)."""


def _engine() -> Any:
    try:
        return importlib.import_module(ENGINE)
    except ImportError:
        return None


@experiment(
    "lock",
    "6.5",
    "the chapter's ticket sale without and with a Lock (see `mplab tickets local`)",
    params={"stock": 5, "buyers": 7, "window": 0.1},
    param_help={"stock": "tickets", "buyers": "buyer processes", "window": "seconds between read and write"},
    runs_in_node=False,
    node_note="the ticket sale has its own node mode: `mplab tickets submit`",
)
def lock(lab: Lab) -> None:
    rep = lab.report
    engine = _engine()
    if engine is None or not hasattr(engine, "run_local"):
        rep.event("the ticket engine is not available in this build")
        rep.claim(
            "without a lock, concurrent buyers oversell",
            "not-measured",
            "see `mplab tickets local` (not yet available)",
        )
        return
    stock, buyers, window = int(lab.p("stock")), int(lab.p("buyers")), float(lab.p("window"))
    out: dict[str, Any] = {}
    for mode in ("unsafe", "lock"):
        try:
            res = engine.run_local(lab.settings, stock=stock, buyers=buyers, mode=mode, window=window)
        except TypeError as exc:
            rep.claim(
                "without a lock, concurrent buyers oversell",
                "not-measured",
                f"ticket engine API changed: {exc}",
            )
            return
        with contextlib.suppress(Exception):
            engine.delete(lab.settings, res["sale_id"])
        s = res["summary"]
        out[mode] = {k: s.get(k) for k in ("sold", "oversold", "final_counter", "lost_updates", "seats_sold_twice")}
        rep.event(f"{mode:6}: {buyers} buyer processes, {stock} tickets -> {out[mode]}")
    rep.measure("sales", out)
    bad, good = out["unsafe"], out["lock"]
    rep.claim(
        "without a lock, concurrent buyers oversell (6.5.1)",
        "holds" if (bad["sold"] or 0) > stock or (bad["lost_updates"] or 0) > 0 else "wrong",
        f"{bad['sold']} sold of {stock}, final count {bad['final_counter']}, lost updates "
        f"{bad['lost_updates']}; "
        "details: `mplab tickets local`",
        "6.5.1",
    )
    rep.claim(
        "a multiprocessing.Lock around read-modify-write sells exactly the stock (6.5.2)",
        "holds" if good["sold"] == min(stock, buyers) and not good["seats_sold_twice"] else "wrong",
        f"{good['sold']} sold of {stock}, final count {good['final_counter']}; details: `mplab tickets local`",
        "6.5.2",
    )
