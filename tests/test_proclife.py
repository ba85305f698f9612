"""workers/proclife.py: signals held back while a process starts its children, the child's own handlers,
death with the parent (PR_SET_PDEATHSIG and the polling watch), and `reaped`."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import psutil
import pytest

from tests.chaos_tools import assert_gone
from tests.node_tools import REPO
from workers import proclife

fork = mp.get_context("fork")


@pytest.fixture
def own_sigterm() -> Iterator[list[int]]:
    """A SIGTERM handler that records deliveries (pytest's own is put back afterwards)."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_sent_while_blocked_waits_and_arrives_after(own_sigterm) -> None:
    with proclife.signals_blocked():
        os.kill(os.getpid(), signal.SIGTERM)
        assert own_sigterm == [] and signal.SIGTERM in signal.sigpending()
    assert own_sigterm == [signal.SIGTERM]  # delivered as the mask was restored
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_the_mask_is_restored_even_when_the_block_raises() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with pytest.raises(RuntimeError), proclife.signals_blocked():
        raise RuntimeError("start-up failed")
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _child(conn, then_handlers: bool) -> None:
    """Started with the signals blocked: report what is pending once the parent has signalled, then take
    the node child's handlers (SIGINT ignored, SIGTERM default) and say whether it is still alive."""
    conn.recv()  # the parent has sent its signals
    conn.send(sorted(int(s) for s in signal.sigpending()))
    if then_handlers:
        proclife.child_signals()
    conn.send("survived")
    conn.recv()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_child_started_blocked_holds_early_signals_until_its_own_handlers_are_set(sig) -> None:
    ours, theirs = fork.Pipe()
    with proclife.signals_blocked():
        child = fork.Process(target=_child, args=(theirs, True))
        child.start()
    try:
        os.kill(child.pid, sig)  # before the child has its handlers: the node's would run in it otherwise
        ours.send("signalled")
        assert ours.recv() == [int(sig)]  # held, not run
        if sig == signal.SIGTERM:  # default action once unblocked: the child dies of it
            child.join(20)
            assert child.exitcode == -signal.SIGTERM
        else:  # Ctrl-C is the node's to handle: ignored in its children, even if it came early
            assert ours.recv() == "survived"
            ours.send("exit")
            child.join(20)
            assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def test_die_with_parent_kills_the_child_when_its_parent_is_killed() -> None:
    # parent -> child; the child asks for SIGKILL on its parent's death, then the parent is kill -9'ed
    code = textwrap.dedent(
        """
        import os, signal, sys, time
        from workers import proclife
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ok = proclife.die_with_parent(signal.SIGKILL, parent)
            print(os.getpid(), ok, flush=True)
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    child = None
    try:
        assert parent.stdout is not None
        pid, ok = parent.stdout.readline().split()
        assert ok == "True"
        child = psutil.Process(int(pid))
        assert child.ppid() == parent.pid
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()  # type: ignore[union-attr]
    assert child is not None
    assert_gone([child])  # killed with its parent


def _report_too_late(conn) -> None:
    conn.send(proclife.die_with_parent(0, os.getppid() + 1))  # signal 0: asks for nothing, changes nothing


def test_die_with_parent_says_when_the_parent_is_already_gone() -> None:
    ours, theirs = fork.Pipe()
    child = fork.Process(target=_report_too_late, args=(theirs,))
    child.start()
    assert ours.recv() is False  # not our parent any more: the request came too late
    child.join(20)


def _watched(conn) -> None:
    """Middle process: a grandchild that polls for its parent, then wait to be killed."""
    grandchild = fork.Process(target=_watch_then_report, args=(conn, os.getpid()))
    grandchild.start()
    time.sleep(60)


def _watch_then_report(conn, parent: int) -> None:
    def orphaned() -> None:
        conn.send(("orphaned", os.getppid()))
        os._exit(0)

    proclife.watch_parent(parent, orphaned, interval=0.02)
    conn.send(("watching", os.getpid()))
    time.sleep(60)
    os._exit(1)


def test_watch_parent_calls_back_once_the_parent_is_gone() -> None:
    ours, theirs = fork.Pipe()
    middle = fork.Process(target=_watched, args=(theirs,))
    middle.start()
    try:
        assert ours.poll(20)
        what, pid = ours.recv()
        assert what == "watching"
        middle.kill()
        assert ours.poll(20), "the watch never noticed its parent die"
        what, new_parent = ours.recv()
        assert what == "orphaned" and new_parent != middle.pid  # re-parented: the callback ran
        with contextlib.suppress(psutil.NoSuchProcess):
            assert_gone([psutil.Process(pid)])  # and it ended the process
    finally:
        middle.kill()
        middle.join()


def test_reaped_joins_what_ended_and_kills_what_did_not() -> None:
    quick = fork.Process(target=time.sleep, args=(0,))
    stuck = fork.Process(target=time.sleep, args=(60,))
    never = fork.Process(target=time.sleep, args=(0,))
    with pytest.raises(RuntimeError), proclife.reaped(quick, stuck, never, timeout=1.0):
        quick.start()
        stuck.start()
        raise RuntimeError("the block failed after starting two of three")
    assert quick.exitcode == 0  # ended by itself within the timeout
    assert stuck.exitcode == -signal.SIGKILL  # still running after it: killed, and joined (no zombie)
    assert never.exitcode is None  # never started: nothing to do
