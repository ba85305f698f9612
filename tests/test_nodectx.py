"""workers/nodectx.py: signals held back while a node starts its children, the child's own handlers, death
with the parent, and the per-process context (node name, Redis rebuilt from its URL, host lock)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import psutil
import pytest
import redis

from tasks import registry
from tests.chaos_tools import assert_gone
from workers import nodectx

fork = mp.get_context("fork")


@pytest.fixture
def own_sigterm() -> Iterator[list[int]]:
    """A SIGTERM handler that records deliveries (pytest's own is put back afterwards)."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_sent_while_blocked_waits_and_arrives_after(own_sigterm) -> None:
    with nodectx.signals_blocked():
        os.kill(os.getpid(), signal.SIGTERM)
        assert own_sigterm == [] and signal.SIGTERM in signal.sigpending()
    assert own_sigterm == [signal.SIGTERM]  # delivered as the mask was restored
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_the_mask_is_restored_even_when_the_block_raises() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with pytest.raises(RuntimeError), nodectx.signals_blocked():
        raise RuntimeError("start-up failed")
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _child(conn, then_handlers: bool) -> None:
    """Started with the signals blocked: report what is pending once the parent has signalled, then take
    the node child's handlers (SIGINT ignored, SIGTERM default) and say whether it is still alive."""
    conn.recv()  # the parent has sent its signals
    conn.send(sorted(int(s) for s in signal.sigpending()))
    if then_handlers:
        nodectx.child_signals()
    conn.send("survived")
    conn.recv()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_child_started_blocked_holds_early_signals_until_its_own_handlers_are_set(sig) -> None:
    ours, theirs = fork.Pipe()
    with nodectx.signals_blocked():
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
        from workers import nodectx
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            ok = nodectx.die_with_parent(signal.SIGKILL, parent)
            print(os.getpid(), ok, flush=True)
            time.sleep(60)
            os._exit(0)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
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
    conn.send(nodectx.die_with_parent(0, os.getppid() + 1))  # signal 0: asks for nothing, changes nothing


def test_die_with_parent_says_when_the_parent_is_already_gone() -> None:
    ours, theirs = fork.Pipe()
    child = fork.Process(target=_report_too_late, args=(theirs,))
    child.start()
    assert ours.recv() is False  # not our parent any more: the request came too late
    child.join(20)


@pytest.fixture
def node_context() -> Iterator[None]:
    """nodectx's globals and the registry's node name are put back after the test."""
    saved = (nodectx._url, nodectx._client, nodectx._host_lock, registry.node_name())
    yield
    if nodectx._client is not None:
        nodectx._client.close()
    nodectx._url, nodectx._client, nodectx._host_lock = saved[:3]
    registry.set_node_name(saved[3])


def test_init_sets_the_node_and_connection_is_rebuilt_once_per_process_from_the_url(node_context, redis_url) -> None:
    lock = fork.Lock()
    nodectx.init("n7", redis_url, lock)
    assert registry.node_name() == "n7" and nodectx.host_lock() is lock
    conn = nodectx.connection()
    assert conn is nodectx.connection()  # one client per process
    assert conn.ping() and isinstance(conn, redis.Redis)
    nodectx.init("n8", redis_url, None)  # a new init drops the old client
    assert nodectx.connection() is not conn and nodectx.host_lock() is None
    conn.close()


def test_outside_a_node_and_a_job_there_is_no_connection(node_context) -> None:
    nodectx.init("", None, None)
    with pytest.raises(RuntimeError, match="no node Redis and no current RQ job"):
        nodectx.connection()
