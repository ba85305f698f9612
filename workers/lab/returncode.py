"""Section 7.2.4, beyond `subprocess`: what a returncode checked by hand does not tell you (a signal's
negative code, a shell pipeline's hidden failure), next to the chapter's own ls by hand and with check=True."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from typing import TypedDict

from workers.lab.base import Lab, experiment

PY = sys.executable
MISSING_DIR = "/nonexistent/directory"
"""The chapter's failing command lists this directory."""

BY_SIGNAL = "a child killed by a signal has a negative returncode (-signal number); without check nothing is raised"
PIPELINE = "a shell pipeline's returncode is its last command's: a failure earlier in the pipe goes unseen"


class Outcome(TypedDict):
    """How one subprocess.run() call ended: returned (with its returncode) or raised."""

    command: str
    raised: str
    returncode: int | None
    stderr: str


def _run(argv: list[str], check: bool) -> Outcome:
    shown = " ".join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or "").strip().splitlines()[-1:] or [""]
        return {"command": shown, "raised": "CalledProcessError", "returncode": exc.returncode, "stderr": tail[0]}
    tail = done.stderr.strip().splitlines()[-1:] or [""]
    return {"command": shown, "raised": "nothing", "returncode": done.returncode, "stderr": tail[0]}


def _failing_command() -> tuple[list[str], str]:
    """The chapter's `ls /nonexistent/directory`, or the same failure in Python where there is no ls."""
    ls = shutil.which("ls")
    if ls is not None:
        return ["ls", MISSING_DIR], "the chapter's command"
    code = f"import os, sys; os.listdir({MISSING_DIR!r})"
    return [PY, "-c", code], "no ls here: a Python program listing the same directory"


@experiment(
    "returncode-traps",
    "7.2.4",
    "returncodes checked by hand: the chapter's ls, a child killed by a signal, a failure inside a shell pipeline",
)
def returncode_traps(lab: Lab) -> None:
    rep = lab.report
    argv, which = _failing_command()
    by_hand = _run(argv, check=False)
    rep.event(f"run({argv}, capture_output=True) [{which}] -> {by_hand}")
    checked = _run(argv, check=True)
    rep.event(f"the same with check=True -> {checked}")
    killed = _run([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], check=False)
    rep.event(f"a child that is killed by SIGKILL, without check -> {killed}")
    sh = shutil.which("sh")
    pipeline = _run([sh, "-c", "false | true"], check=False) if sh else None
    if pipeline is not None:
        rep.event(f"run(['sh', '-c', 'false | true']) -> {pipeline}")
    rep.measure("without_check", by_hand)
    rep.measure("with_check", checked)
    rep.measure("killed_by_signal", killed)
    rep.measure("shell_pipeline", pipeline)
    by_signal = killed["raised"] == "nothing" and killed["returncode"] == -signal.SIGKILL
    rep.edge(
        BY_SIGNAL,
        "holds" if by_signal else "wrong",
        f"a child that SIGKILLed itself: returncode {killed['returncode']} (minus SIGKILL's number, "
        f"{int(signal.SIGKILL)}), nothing raised; the chapter's failing `{by_hand['command']}` gave "
        f"{by_hand['returncode']}, a code the program chose. `returncode != 0` catches both, `> 0` misses the signal"
        if by_signal
        else f"a child that SIGKILLed itself: raised {killed['raised']}, returncode {killed['returncode']}",
    )
    if pipeline is None:
        rep.edge(PIPELINE, "not-measured", "no sh on this machine")
        return
    unseen = pipeline["returncode"] == 0
    rep.edge(
        PIPELINE,
        "holds" if unseen else "wrong",
        "`sh -c 'false | true'` returned 0 although `false` failed: check each step (or use bash's "
        "`set -o pipefail`) before trusting the returncode"
        if unseen
        else f"`sh -c 'false | true'` returned {pipeline['returncode']}: this shell reports the failure",
    )
