"""The bias #9 removed: a CPU loop timed in a process that also runs a live rich progress bar.

Run: .venv/bin/python benchmarks/render_bias.py [--rounds 5]
Each round times the chapter's task (sum(i*i for i in range(2_000_000)), 8 times) in a fresh child process,
once with a live `rich.progress.Progress` (its refresh thread redraws 10x a second and takes the GIL) and
once without, in alternating order. Prints the medians, min-max and the slowdown; this is why compare's
serial reference runs in a child of its own and its progress line has no refresh thread.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import statistics
import time
from multiprocessing.connection import Connection


def _loop() -> float:
    t0 = time.perf_counter()
    for _ in range(8):
        sum(i * i for i in range(2_000_000))
    return time.perf_counter() - t0


def _child(conn: Connection, live: bool) -> None:
    if live:
        from rich.console import Console
        from rich.progress import Progress

        console = Console(file=io.StringIO(), force_terminal=True, width=80)
        with Progress(console=console, auto_refresh=True, refresh_per_second=10) as progress:
            progress.add_task("measuring", total=None)
            conn.send(_loop())
    else:
        conn.send(_loop())
    conn.close()


def timed(ctx: mp.context.BaseContext, live: bool) -> float:
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(theirs, live))
    proc.start()
    seconds = float(ours.recv())
    proc.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    ctx = mp.get_context("fork")
    plain: list[float] = []
    live: list[float] = []
    for r in range(args.rounds):
        for with_bar in (r % 2 == 0, r % 2 == 1):
            (live if with_bar else plain).append(timed(ctx, with_bar))
    p, b = statistics.median(plain), statistics.median(live)
    print(f"8 x sum(i*i for i in range(2M)), {args.rounds} interleaved rounds, fork, each in a fresh child")
    print(f"  no progress bar:   {p:.3f} s (min-max {min(plain):.3f}-{max(plain):.3f})")
    print(f"  live progress bar: {b:.3f} s (min-max {min(live):.3f}-{max(live):.3f})")
    print(f"  slowdown: {b / p:.2f}x (median over median)")


if __name__ == "__main__":
    main()
