"""`mplab worker`: a node = P slot processes (RQ workers, no fork per job) + a warm Pool(P) for batches.

Process tree (P = pool size): node ─┬─ slot 1..P   (each a registered RQ worker; runs single jobs)
                                     └─ pool 1..P   (multiprocessing.Pool; runs chunks of batch jobs)
Slots talk to the node over one Pipe each (one-to-one); Pool processes report progress to the node over
one SimpleQueue (many-to-one). The node writes batch progress into `job.meta` and a heartbeat hash.

Stopping (SIGTERM/SIGINT): slots get SIGTERM, which is RQ's warm shutdown (finish the running job, take
no new one); the node keeps serving their batches. After the grace period, slots still busy are killed
and their jobs re-queued at the front with the reason in `job.meta`. Nothing is left running.

Faults: a Redis outage is ridden out (slots wait to write, the node stops only after `redis_timeout`,
exit 1); a dead slot is replaced (with a growing delay) and its job re-queued; every `SWEEP_INTERVAL`
the node re-queues jobs of nodes whose heartbeat expired (`workers.recovery`); batch faults are
`workers.fanout`'s.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import redis
from rq.worker import SimpleWorker

from tasks.registry import AllowList
from workers import client as jobclient
from workers import defaults, nodectx, proclife, recovery
from workers.errors import ConfigError, RedisUnavailable
from workers.fanout import Fanout
from workers.heartbeat import Heart, NodeFacts, node_key, worker_key
from workers.pool import BatchPool
from workers.redis_server import connect, redact
from workers.settings import Settings
from workers.slot import SlotConfig, slot_main

log = logging.getLogger("mplab.node")


NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]*")


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


QUEUE_NAME = re.compile(r"[A-Za-z0-9._:-]+")


def _what_is_wrong(text: str, pattern: re.Pattern[str], limit: int) -> str:
    """Describe a bad name without echoing it (it may hold newlines or console markup)."""
    if not text:
        return "got an empty name"
    if len(text) > limit:
        return f"got {len(text)} characters"
    bad = next((c for c in text if not pattern.fullmatch(c)), text[0])
    return f"got character {ascii(bad)} at position {text.index(bad)}"


def check_queues(queues: tuple[str, ...]) -> tuple[str, ...]:
    """At most MAX_QUEUES names of letters, digits and . _ - : (no path, space or markup)."""
    if len(queues) > defaults.MAX_QUEUES:
        raise ConfigError(f"a node serves at most {defaults.MAX_QUEUES} queues, got {len(queues)}")
    for queue in queues:
        if len(queue) > defaults.MAX_QUEUE_NAME or not QUEUE_NAME.fullmatch(queue):
            why = _what_is_wrong(queue, QUEUE_NAME, defaults.MAX_QUEUE_NAME)
            raise ConfigError(f"queue names must be 1-{defaults.MAX_QUEUE_NAME} letters, digits or . _ - : ({why})")
    return queues


def check_options(name: str, pool_size: int, grace: float, redis_timeout: float) -> None:
    """Finite, documented ranges for every node option; ConfigError (exit 2) otherwise."""
    if len(name) > defaults.MAX_NODE_NAME or not NODE_NAME.fullmatch(name):
        why = _what_is_wrong(name, re.compile(r"[A-Za-z0-9._:@-]"), defaults.MAX_NODE_NAME)
        raise ConfigError(
            f"node name must be 1-{defaults.MAX_NODE_NAME} letters, digits or . _ - : @, "
            f"starting with a letter or digit ({why})"
        )
    if pool_size < 1:
        raise ConfigError(f"pool size must be >= 1, got {pool_size}")
    if pool_size > defaults.MAX_POOL_SIZE:
        raise ConfigError(f"pool size must be <= {defaults.MAX_POOL_SIZE}, got {pool_size}")
    if not (math.isfinite(grace) and 0 <= grace <= defaults.MAX_GRACE):
        raise ConfigError(f"grace period must be 0..{defaults.MAX_GRACE:.0f} seconds, got {grace}")
    if not (math.isfinite(redis_timeout) and 1 <= redis_timeout <= defaults.MAX_REDIS_TIMEOUT):
        raise ConfigError(f"Redis timeout must be 1..{defaults.MAX_REDIS_TIMEOUT:.0f} seconds, got {redis_timeout}")


@dataclass
class Slot:
    name: str
    process: BaseProcess
    conn: Connection
    started: float = 0.0  # monotonic start time
    failures: int = 0  # consecutive quick deaths: the restart delay grows with them
    restart_at: float | None = None  # set while a dead slot waits to be restarted


class Node:
    """One worker node; `run()` blocks until it has stopped and every child is reaped."""

    def __init__(
        self,
        settings: Settings,
        url: str,
        name: str,
        *,
        burst: bool = False,
        verbose: bool = False,
        redis_timeout: float = defaults.REDIS_TIMEOUT,
        functions: AllowList,
    ):
        """`functions`: the job functions the node may run (slots refuse any other job, with the reason)."""
        check_options(name, settings.pool_size, settings.grace_period, redis_timeout)
        check_queues(settings.queues)
        self.settings = settings
        self.url = url
        self.name = name
        self.burst = burst
        self.redis_timeout = redis_timeout
        self.functions = functions
        self.log_level = "INFO" if verbose else "WARNING"
        self.ctx = settings.mp_context()
        self.client: redis.Redis = connect(url, socket_timeout=defaults.NODE_SOCKET_TIMEOUT)
        self.slots: list[Slot] = []
        self.stopping = False
        self.deadline: float | None = None
        self.requeued: list[str] = []
        self.lost = recovery.LostJobs()  # jobs popped by a slot that died before it started them
        self.redis_lost_at: float | None = None  # monotonic time of the first failure of an outage
        self.redis_back_at = time.monotonic()  # since when Redis has answered without a break
        self.failure: str | None = None  # why the node stopped by itself (exit 1)
        # self.fanout and self.heart exist once run() has created them

    # -- start -------------------------------------------------------------------------------------
    def _claim_name(self) -> None:
        """Atomically claim the node's name (HSETNX), so two nodes can never share it."""
        key = node_key(self.name)
        if not self.client.hsetnx(key, "claimed_by", f"{socket.gethostname()}:{os.getpid()}"):
            raise ConfigError(f"a node named {self.name!r} is already running against this Redis")
        self.client.expire(key, 60)  # until the first heartbeat (start-up can take seconds with spawn)
        for i in range(self.settings.pool_size):  # leftovers of a killed node with this name
            self._bury(self._slot_name(i))

    def _bury(self, slot_name: str) -> None:
        """Mark a dead slot's RQ worker record dead, so a replacement may register the same name."""
        recovery.bury(self.client, slot_name)

    def _slot_name(self, i: int) -> str:
        return f"{self.name}.slot{i + 1}"

    def _start_slot(self, i: int) -> Slot:
        ours, theirs = self.ctx.Pipe(duplex=True)
        cfg = SlotConfig(self._slot_name(i), self.name, self.url, self.settings.queues, self.burst,
                         self.log_level, self.functions, self.redis_timeout)  # fmt: skip
        # With fork the child gets a copy of every Pipe end the node holds: it closes them first thing,
        # or the node's death would not be an EOF on its own pipe. Other start methods copy nothing.
        inherited = [ours, *(s.conn for s in self.slots)] if self.settings.start_method == "fork" else []
        proc = self.ctx.Process(target=slot_main, args=(cfg, theirs, self.lock, inherited), name=cfg.name)  # type: ignore[attr-defined]
        with proclife.signals_blocked():
            proc.start()
        theirs.close()
        return Slot(cfg.name, proc, ours, started=time.monotonic())

    def _start_pool(self) -> BatchPool:
        with proclife.signals_blocked():  # the Pool's threads (which re-fork workers) keep them blocked
            return BatchPool(self.ctx, self.settings.pool_size, self.name, self.url, self.lock, self.functions)

    def run(self) -> int:
        """Start, serve until stopped, stop; every child is reaped before this returns.

        Returns 0 after a signal (or an empty queue in burst mode); raises RedisUnavailable (exit 1)
        after Redis stayed unreachable for `redis_timeout` seconds.
        """
        self._claim_name()
        # Our handlers before any child exists: a signal during start-up stops the node in order too.
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.lock = self.ctx.Lock()
            nodectx.init(self.name, self.url, self.lock)
            # The Pool before the slots: with fork, its processes must not inherit slot pipes or threads.
            self.fanout = Fanout(self._start_pool, self.client, self.name)
            for i in range(self.settings.pool_size):
                if not self.stopping:
                    self.slots.append(self._start_slot(i))
            self.heart = Heart(self.client, self.name, NodeFacts.of(self.settings))
            log.warning(
                "node %s (pid %d): %d slots, Pool(%d) pids %s, start method %s, queues %s",
                self.name, os.getpid(), len(self.slots), self.settings.pool_size, self.fanout.pool.pids(),
                self.settings.start_method, ",".join(self.settings.queues),
            )  # fmt: skip
            self._loop()
        finally:
            self._shutdown()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.client.close()
        log.warning("node %s stopped (%d job(s) re-queued)", self.name, len(self.requeued))
        if self.failure is not None:
            raise RedisUnavailable(self.failure)
        return 0

    # -- main loop ---------------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.warning("node %s: %s, stopping (grace %.0fs)", self.name, signal.Signals(signum).name,
                        self.settings.grace_period)  # fmt: skip
            self.stopping = True
            self.deadline = time.monotonic() + self.settings.grace_period
            for slot in self.slots:
                if slot.process.is_alive() and slot.process.pid:
                    os.kill(slot.process.pid, signal.SIGTERM)
        else:
            log.warning("node %s: second signal, stopping now", self.name)
            self.deadline = time.monotonic()

    def _loop(self) -> None:
        next_beat = next_sweep = 0.0
        while True:
            now = time.monotonic()
            if now >= next_beat:
                self._beat()
                next_beat = now + defaults.HEARTBEAT_INTERVAL
            if self.failure is not None:
                return
            if now >= next_sweep:
                self._sweep()
                next_sweep = now + defaults.SWEEP_INTERVAL
            if self.burst and all(s.process.exitcode == 0 for s in self.slots):
                return  # burst: every slot found the queues empty
            if self.stopping and not any(s.process.is_alive() for s in self.slots):
                return
            if self.deadline is not None and now >= self.deadline:
                return
            alive = [s for s in self.slots if s.process.is_alive()]
            waitables: list[Any] = [s.conn for s in alive] + [self.fanout.reader]
            waitables += [s.process.sentinel for s in alive]
            for ready in wait(waitables, timeout=0.2):
                if ready is self.fanout.reader:
                    self.fanout.drain_progress()
                else:
                    self._from_slot(ready)
            self._reap_slots()
            if not self.stopping:
                self.fanout.check_pool()

    def _beat(self) -> None:
        """Write the heartbeat; track Redis outages (stop after `redis_timeout`, log once per outage)."""
        now = time.monotonic()
        try:
            self.heart.beat([s.name for s in self.slots], "stopping" if self.stopping else "running",
                            self.fanout.pool.pids())  # fmt: skip
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            if self.redis_lost_at is None:
                self.redis_lost_at = now
                log.warning("node %s: Redis unreachable (%s); riding it out for up to %.0fs", self.name, exc,
                            self.redis_timeout)  # fmt: skip
            elif now - self.redis_lost_at > self.redis_timeout:
                lost = now - self.redis_lost_at
                self.failure = (
                    f"node {self.name}: Redis at {redact(self.url)} unreachable for {lost:.0f}s "
                    f"(--redis-timeout {self.redis_timeout:g}); stopped"
                )
            self.fanout.redis_down = True
            return
        if self.redis_lost_at is not None:
            log.warning("node %s: Redis is back after %.1fs", self.name, now - self.redis_lost_at)
            self.redis_lost_at = None
            self.redis_back_at = now
        self.fanout.redis_down = False

    def _sweep(self) -> None:
        """Re-queue jobs of dead nodes, only once Redis has answered for a heartbeat TTL (after an outage
        every live node's key may have expired: they get that long to write it again); and jobs a dead slot
        had popped but not started (`recovery.LostJobs`: its own two-step check needs no such wait). Also
        move retries whose interval is over from the scheduled registry back to their queue (RQ's
        scheduler's job)."""
        if self.redis_lost_at is not None:
            return
        outcomes: list[recovery.Outcome] = []
        try:
            if time.monotonic() - self.redis_back_at >= defaults.HEARTBEAT_TTL:
                jobclient.promote_due(self.client, self.settings.queues)
                outcomes = recovery.sweep(self.client, self.settings.queues, self.name)
                if recovery.bury_dead_slots(self.client) or outcomes:
                    self.lost.note_death()
            outcomes += self.lost.check(self.client, self.settings.queues, self.name)
        except redis.RedisError as exc:
            log.warning("node %s: sweep failed: %s", self.name, exc)
        self.requeued += [o.job_id for o in outcomes if o.action == "requeued"]

    def _from_slot(self, ready: Any) -> None:
        slot = next((s for s in self.slots if s.conn is ready), None)
        if slot is None:
            return
        try:
            message = slot.conn.recv()
        except (EOFError, OSError):
            return
        self.fanout.handle(slot.conn, message)

    def _reap_slots(self) -> None:
        """A slot that died while the node runs: re-queue its job, restart it after a growing delay.

        While Redis is unreachable the dead slot waits: its job can be found and re-queued only in Redis.
        """
        now = time.monotonic()
        for i, slot in enumerate(self.slots):
            if slot.process.is_alive() or slot.process.exitcode is None:
                continue
            if self.stopping or (self.burst and slot.process.exitcode == 0):
                continue
            if slot.restart_at is None:
                slot.process.join()
                self.fanout.forget(slot.conn)
                slot.conn.close()
                quick = now - slot.started < 30
                slot.failures = slot.failures + 1 if quick else 1
                delay = min(defaults.SLOT_RESTART_MAX_DELAY, 0.5 * 2 ** (slot.failures - 1))
                slot.restart_at = now + delay
                log.warning("node %s: slot %s died (exit %s); restarting it in %.1fs", self.name, slot.name,
                            slot.process.exitcode, delay)  # fmt: skip
            if now < slot.restart_at or self.redis_lost_at is not None:
                continue
            reason = f"slot {slot.name} of node {self.name} died (exit code {slot.process.exitcode})"
            try:
                self._requeue(self._current_runs(slot.name), slot.name, reason, recovery.Cut.DEATH)
            except redis.RedisError:
                continue  # Redis went away meanwhile: next round
            self.lost.note_death()  # it may have popped a job it had not registered yet
            fresh = self._start_slot(i)
            fresh.failures = slot.failures
            self.slots[i] = fresh

    # -- stop --------------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        self.stopping = True
        grace = self.settings.grace_period
        reason = f"node {self.name} stopped: job still running after the {grace:.0f}s grace period"
        for slot in self.slots:
            if slot.process.is_alive():
                runs: list[tuple[str, str]] = []
                if self.redis_lost_at is None:  # else each lookup would wait for a connect timeout
                    with contextlib.suppress(redis.RedisError):
                        runs = self._current_runs(slot.name)
                slot.process.kill()
                slot.process.join()
                try:
                    self._requeue(runs, slot.name, reason, recovery.Cut.STOP)
                except redis.RedisError as exc:  # the sweep of another node re-queues them once Redis is back
                    log.warning("node %s: could not re-queue %s: %s", self.name, [r[0] for r in runs], exc)
            else:
                slot.process.join()
            slot.conn.close()
        if hasattr(self, "fanout"):
            self.fanout.close()
        with contextlib.suppress(redis.RedisError):
            self.client.delete(node_key(self.name))
            self.client.srem(defaults.NODES_SET, self.name)

    def _current_runs(self, slot_name: str) -> list[tuple[str, str]]:
        """(job id, execution id) of the runs a slot has in progress, from its RQ executions in Redis."""
        worker = SimpleWorker.find_by_key(worker_key(slot_name), connection=self.client)
        if worker is None:
            return []
        return [(e.job_id, e.id) for e in worker.get_current_executions(refresh=True)]

    def _requeue(self, runs: list[tuple[str, str]], slot_name: str, reason: str, cut: recovery.Cut) -> None:
        """Put interrupted runs back at the front of their queue, saying why; clean the dead slot's record."""
        self._bury(slot_name)
        for job_id, execution_id in runs:
            outcome = recovery.interrupt(self.client, job_id, execution_id, reason, cut, self.name)
            if outcome.action == "requeued":
                self.requeued.append(job_id)
