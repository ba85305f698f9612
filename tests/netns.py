"""Hosts made of Linux network namespaces, for the multi-host tests (tests/test_multihost.py).

One run builds, for PREFIX = "mpl-<pid>-":

    PREFIXbr         a bridge `br0` in its own namespace: the switch
    PREFIX<host>     one namespace per host: `lo` and `eth0` (a veth whose peer `v-<host>` is a bridge port),
                     with 10.213.7.N/24 and no other route

The /24 exists only inside these namespaces (no default route anywhere, IPv6 off), so no packet can leave
the machine. A host's processes run under `ip netns exec` plus `unshare --uts`, with their own hostname.
Everything is torn down by `Net.destroy()` (every process in every namespace killed, namespaces deleted),
which also runs at exit; namespaces left by a run that was SIGKILLed are removed by the next run.

Run as a script (`python -m tests.netns probe ...`) it is the test's Redis probe, run inside the client
namespace (the test process itself cannot reach the /24): see `probe_main`.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SUBNET = "10.213.7"
PREFIX_RE = re.compile(r"^mpl-(\d+)-")
CMD_TIMEOUT = 20.0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=CMD_TIMEOUT)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def unusable_reason() -> str | None:
    """Why network-namespace hosts cannot be built here, or None when they can."""
    if not sys.platform.startswith("linux"):
        return "network namespaces are Linux-only"
    if os.geteuid() != 0:
        return "building network namespaces needs root (ip netns add)"
    for tool in ("ip", "unshare", "ss", "hostname"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    name = f"mpl-{os.getpid()}-check"
    try:
        _ip("netns", "add", name)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns add` does not work here: {exc}"
    try:
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return f"`ip netns exec` does not work here: {exc}"
    finally:
        _ip("netns", "del", name, check=False)
    return None


def ns_pids(ns: str) -> list[int]:
    """Every process whose network namespace is `ns`."""
    proc = _ip("netns", "pids", ns, check=False)
    return [int(word) for word in proc.stdout.split() if word.isdigit()]


def kill_ns(ns: str, timeout: float = 10.0) -> None:
    """SIGKILL every process in `ns` (repeatedly: a dying parent may have just forked) until none is left."""
    deadline = time.monotonic() + timeout
    while pids := ns_pids(ns):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {ns} survive SIGKILL")
        time.sleep(0.05)


@dataclass
class Host:
    """One namespace host: its name, namespace, address on the /24 and hostname."""

    name: str
    ns: str
    ip: str
    hostname: str


@dataclass(eq=False)  # hashed by identity: kept in _LIVE
class Net:
    """A bridge and hosts on it; `destroy()` removes all of it and may be called any number of times."""

    prefix: str = field(default_factory=lambda: f"mpl-{os.getpid()}-")
    hosts: dict[str, Host] = field(default_factory=dict)
    bridge_ns: str = ""
    namespaces: list[str] = field(default_factory=list)  # every one created, the bridge's included
    procs: list[tuple[Host, subprocess.Popen[bytes]]] = field(default_factory=list)

    def create(self) -> None:
        self.bridge_ns = self._add_ns("br")
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")

    def _add_ns(self, name: str) -> str:
        ns = self.prefix + name
        _LIVE.add(self)
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        # IPv6 off (not even link-local addresses): the hosts speak only on 10.213.7.0/24 and loopback.
        no_ipv6 = "; ".join(f"echo 1 > /proc/sys/net/ipv6/conf/{c}/disable_ipv6" for c in ("all", "default"))
        subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", no_ipv6], check=True, timeout=CMD_TIMEOUT)
        _ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def add_host(self, name: str, octet: int, hostname: str) -> Host:
        ns = self._add_ns(name)
        host = Host(name, ns, f"{SUBNET}.{octet}", hostname)
        port = f"v-{name}"
        _ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        self.hosts[name] = host
        return host

    def argv(self, host: Host, argv: list[str]) -> list[str]:
        """`argv` run on `host`: in its network namespace, in a fresh UTS namespace with its hostname."""
        set_name = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", host.ns, "unshare", "--uts", "--", "sh", "-c", set_name, host.hostname, *argv]

    def popen(
        self, host: Host, argv: list[str], env: dict[str, str], log: IO[bytes] | int, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.argv(host, argv), env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
        self.procs.append((host, proc))
        return proc

    def run(
        self, host: Host, argv: list[str], env: dict[str, str], timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        argv = self.argv(host, argv)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)

    def link(self, host: Host, up: bool) -> None:
        """Plug or unplug `host`'s cable at the switch: its own interface stays up, packets stop."""
        _ip("-n", self.bridge_ns, "link", "set", f"v-{host.name}", "up" if up else "down")

    def kill_host(self, host: Host) -> None:
        """Every process on `host` killed with SIGKILL, as when a machine loses power."""
        kill_ns(host.ns)
        for owner, proc in self.procs:
            if owner is host:
                proc.wait(timeout=10)  # dead already: this only collects its exit status

    def destroy(self) -> None:
        names = list(self.namespaces)
        for ns in names:
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                kill_ns(ns)
        for _host, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        for ns in names:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                _ip("netns", "del", ns, check=False)
        self.hosts.clear()
        self.namespaces.clear()
        self.bridge_ns = ""
        _LIVE.discard(self)


_LIVE: set[Net] = set()


@atexit.register
def _destroy_all() -> None:
    for net in list(_LIVE):
        net.destroy()


def remove_stale() -> list[str]:
    """Delete namespaces of earlier runs whose process is gone (a run killed before its clean-up)."""
    removed = []
    listing = _ip("netns", "list", check=False).stdout
    for line in listing.splitlines():
        ns = line.split()[0] if line.split() else ""
        match = PREFIX_RE.match(ns)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                kill_ns(ns)
            _ip("netns", "del", ns, check=False)
            removed.append(ns)
    return removed


# -- the probe: runs inside the client namespace, talks to the lab's Redis ----------------------------


def _jobs_by_id(client: Any, ids: list[str]) -> dict[str, dict[str, Any]]:
    from rq.job import Job
    from rq.serializers import JSONSerializer

    out: dict[str, dict[str, Any]] = {}
    for job in Job.fetch_many(ids, connection=client, serializer=JSONSerializer):
        if job is None:
            continue
        ended_at = job.ended_at  # RQ keeps UTC, naive
        if ended_at is not None and ended_at.tzinfo is None:
            ended_at = ended_at.replace(tzinfo=datetime.UTC)
        ended = ended_at.timestamp() if ended_at else None
        status = job.get_status(refresh=False)
        out[job.id] = {"status": str(status.value if status else "missing"), "worker": job.worker_name, "ended": ended}
    for job_id in ids:
        out.setdefault(job_id, {"status": "missing", "worker": None, "ended": None})
    return out


def _started_on(client: Any, node: str) -> list[str]:
    from rq.queue import Queue
    from rq.serializers import JSONSerializer

    ids: list[str] = []
    for queue in Queue.all(connection=client, serializer=JSONSerializer):
        ids += queue.started_job_registry.get_job_ids()
    jobs = _jobs_by_id(client, ids)
    return [job_id for job_id, job in jobs.items() if (job["worker"] or "").startswith(node + ".")]


def _nodes(client: Any) -> dict[str, dict[str, str]]:
    nodes = {}
    for key in client.scan_iter(match="mplab:node:*"):
        fields = {k.decode(): v.decode() for k, v in client.hgetall(key).items()}
        if "last_beat" in fields:
            nodes[key.decode().removeprefix("mplab:node:")] = fields
    return nodes


def _probe_once(client: Any, args: argparse.Namespace) -> tuple[bool, Any]:
    """One look: (condition met, what was seen)."""
    if args.what == "flush":
        client.flushall()
        return True, "flushed"
    if args.what == "nodes":
        seen = _nodes(client)
        ready = len(seen) == args.count and all(n.get("slots_total") == str(args.pool) for n in seen.values())
        return ready, {name: node["host"] for name, node in seen.items()}
    if args.what == "started-on":
        ids = _started_on(client, args.node)
        return bool(ids), ids
    if args.what == "wait-ended":
        jobs = _jobs_by_id(client, args.ids)
        return all(job["status"] in ("finished", "failed") for job in jobs.values()), jobs
    node = _nodes(client).get(args.node)  # "fresh"
    if node is None:
        return False, None
    age = time.time() - float(node["last_beat"])
    return age <= args.max_age, {"age_s": age, **node}


def probe_main(argv: list[str]) -> int:
    """`python -m tests.netns probe WHAT ...`: one JSON line on stdout; Redis URL from REDIS_URL."""
    import redis

    parser = argparse.ArgumentParser(prog="netns probe")
    sub = parser.add_subparsers(dest="what", required=True)
    flush = sub.add_parser("flush", help="FLUSHALL (waiting for the server to answer)")
    flush.add_argument("--timeout", type=float, default=20)
    nodes = sub.add_parser("nodes", help="wait until COUNT nodes have all their slots up; their hosts")
    nodes.add_argument("count", type=int)
    nodes.add_argument("--pool", type=int, required=True)
    nodes.add_argument("--timeout", type=float, default=30)
    started = sub.add_parser("started-on", help="wait until NODE has a started job; their ids")
    started.add_argument("node")
    started.add_argument("--timeout", type=float, default=30)
    ended = sub.add_parser("wait-ended", help="wait until the jobs are finished or failed (or timeout)")
    ended.add_argument("ids", nargs="+")
    ended.add_argument("--timeout", type=float, default=30)
    fresh = sub.add_parser("fresh", help="wait until NODE's heartbeat is at most MAX_AGE old")
    fresh.add_argument("node")
    fresh.add_argument("--max-age", type=float, default=3)
    fresh.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args(argv)

    client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=10, socket_connect_timeout=3)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            ok, result = _probe_once(client, args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            ok, result = False, f"{type(exc).__name__}: {exc}"
        if ok or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    print(json.dumps({"ok": ok, "at": time.time(), "result": result}))
    client.close()
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] != ["probe"]:
        sys.exit("usage: python -m tests.netns probe WHAT ...")
    sys.exit(probe_main(sys.argv[2:]))
