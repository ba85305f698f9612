"""Section 6.5: the ticket sale is `mplab tickets local`; the lab runs it without and with a Lock."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from workers.lab.base import Lab, experiment
from workers.tickets import local
from workers.tickets.records import SaleSpec


@experiment(
    "lock",
    "6.5",
    "the chapter's ticket sale without and with a Lock (see `mplab tickets local`)",
    params={"stock": 5, "buyers": 7, "window": 0.1},
    limits={"stock": (1, 100), "buyers": (1, 64), "window": (0, 2)},
    param_help={"stock": "tickets", "buyers": "buyer processes", "window": "seconds between read and write"},
)
def lock(lab: Lab) -> None:
    rep = lab.report
    stock, buyers, window = int(lab.p("stock")), int(lab.p("buyers")), float(lab.p("window"))
    out: dict[str, Any] = {}
    for mode in ("unsafe", "lock"):
        # the sale's ticket file and ledger go to a throw-away state dir: the lab leaves no sale behind
        with tempfile.TemporaryDirectory(prefix="mplab-lab-lock-") as tmp:
            settings = lab.settings.with_(state_dir=Path(tmp))
            res = local.run(settings, SaleSpec(mode=mode, stock=stock, buyers=buyers, window=window))
        s = res["summary"]
        out[mode] = {k: s.get(k) for k in ("sold", "oversold", "final_counter", "lost_updates", "seats_sold_twice")}
        rep.event(f"{mode:6}: {buyers} buyer processes, {stock} tickets -> {out[mode]}")
    rep.measure("sales", out)
    bad, good = out["unsafe"], out["lock"]
    rep.claim(
        "without a lock, concurrent buyers oversell (6.5.1)",
        "holds" if (bad["sold"] or 0) > stock or (bad["lost_updates"] or 0) > 0 else "wrong",
        f"{bad['sold']} sold of {stock} ({bad['oversold']} oversold), final count {bad['final_counter']}, lost "
        f"updates {bad['lost_updates']}, seats sold twice {bad['seats_sold_twice']}; details: "
        "`mplab tickets local`",
        "6.5.1",
    )
    rep.claim(
        "a multiprocessing.Lock around read-modify-write sells exactly the stock (6.5.2)",
        "holds" if good["sold"] == min(stock, buyers) and not good["seats_sold_twice"] else "wrong",
        f"{good['sold']} sold of {stock}, final count {good['final_counter']}, seats sold twice "
        f"{good['seats_sold_twice']}; details: `mplab tickets local`",
        "6.5.2",
    )
