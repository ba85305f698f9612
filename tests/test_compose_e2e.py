"""The compose lab brought up for real: docker-compose.yml on a Docker engine, end to end.

One project (unique name, unique host ports, its own password) is built and started once for the module;
the cases run in order against it, as a user would: up, submit, tickets, scale, dashboard, stop with a job
running, restart Redis mid-run, down. Whatever happens, the module ends with `down -v --remove-orphans`
over every profile. Without a reachable engine the module is skipped with the reason (and fails when
CI_REQUIRE names `compose`: .ci/run sets that once it has an engine). The engine is found through the
usual DOCKER_HOST; on machines without Docker Hub, `../shared/tools/docker-offline.sh setup` provides one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.compose_tools import find_compose
from workers.submit import sum_squares_expected

pytestmark = [pytest.mark.compose, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
PROFILES = ("--profile", "dashboard", "--profile", "cli")
POOL = 2
LAB_VARS = ("REDIS_PASSWORD", "REDIS_PORT", "REDIS_BIND", "MPLAB_POOL", "DASHBOARD_PORT")


def require_or_skip(reason: str) -> None:
    if "compose" in os.environ.get("CI_REQUIRE", "").split():
        pytest.fail(f"the compose end-to-end test is required (CI_REQUIRE) but impossible: {reason}")
    pytest.skip(f"NO DOCKER ENGINE, compose lab not tested: {reason}")


def wait_until(what: str, check: Callable[[], Any], timeout: float, step: float = 0.25) -> Any:
    """Poll `check` until it returns something true, or (True, value); (False, detail) shows why not."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        done, value = value if isinstance(value, tuple) else (bool(value), value)
        if done:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s (last: {value!r})")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Lab:
    """One compose project: `lab(args)` runs compose on it; `lab.redis` is a client over the published port."""

    compose: list[str]
    project: str
    env_file: Path
    env: dict[str, str]
    password: str
    redis_port: int
    dashboard_port: int
    redis: redis.Redis = field(init=False)
    finished: list[str] = field(default_factory=list)  # ids of finished jobs, for the dashboard case

    def __post_init__(self) -> None:
        self.redis = redis.Redis(
            host="127.0.0.1", port=self.redis_port, password=self.password, socket_timeout=10, socket_connect_timeout=3
        )

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [*self.compose, "-p", self.project, "--env-file", str(self.env_file), "-f", str(COMPOSE_FILE), *args]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO)
        if check:
            assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def docker(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=self.env)
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def cli(self, *args: str, timeout: float = 180) -> Any:
        """`mplab ARGS --json` in a one-off container of the `cli` service; its JSON output."""
        proc = self("run", "--rm", "-T", "cli", "mplab", *args, "--json", timeout=timeout)
        return json.loads(proc.stdout)

    def containers(self, service: str | None = None, *, all_states: bool = False) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        return self.docker("ps", "-q", "--no-trunc", *(["-a"] if all_states else []), *filters).split()

    def inspect(self, container: str, template: str) -> str:
        return self.docker("inspect", "-f", template, container).strip()

    def nodes(self, fresh_s: float = 5.0) -> dict[str, dict[str, str]]:
        """Nodes whose heartbeat is at most `fresh_s` old and whose slots are all up."""
        found = {}
        for key in self.redis.scan_iter(match="mplab:node:*"):
            node = {k.decode(): v.decode() for k, v in self.redis.hgetall(key).items()}
            if "last_beat" in node and time.time() - float(node["last_beat"]) <= fresh_s:
                if node.get("slots_total") == str(POOL):
                    found[key.decode().removeprefix("mplab:node:")] = node
        return found

    def wait_nodes(self, count: int, timeout: float = 90) -> dict[str, dict[str, str]]:
        def exactly() -> tuple[bool, dict[str, dict[str, str]] | str]:
            try:
                nodes = self.nodes()
            except redis.RedisError as exc:
                return False, repr(exc)
            return len(nodes) == count, nodes

        nodes: dict[str, dict[str, str]] = wait_until(f"{count} live nodes", exactly, timeout)
        return nodes

    def worker_hostnames(self) -> set[str]:
        return {self.inspect(c, "{{.Config.Hostname}}") for c in self.containers("worker")}

    def statuses(self, ids: list[str]) -> dict[str, str]:
        with self.redis.pipeline() as pipe:
            for job_id in ids:
                pipe.hget(f"rq:job:{job_id}", "status")
            return {job_id: (s.decode() if s else "missing") for job_id, s in zip(ids, pipe.execute(), strict=True)}

    def worker_report(self) -> str:
        """State, restart count and last log lines of every worker container (for failure messages)."""
        lines = []
        for container in self.containers("worker", all_states=True):
            state = self.inspect(container, "{{.State.Status}} exit={{.State.ExitCode}} restarts={{.RestartCount}}")
            logs = subprocess.run(
                ["docker", "logs", "--tail", "15", container], capture_output=True, text=True, timeout=60, env=self.env
            )
            lines += [f"--- worker {container[:12]}: {state}", (logs.stdout + logs.stderr)[-3000:]]
        return "\n".join(lines)

    def http(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.dashboard_port}{path}", timeout=10) as response:
            return response.status, response.read()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = {k: v for k, v in os.environ.items() if k not in LAB_VARS and not k.startswith("COMPOSE_")}
    found = find_compose(env)
    compose = found[0] if found is not None else None
    if compose is None or shutil.which("docker") is None:
        require_or_skip("no `docker` CLI with `docker compose` or `docker-compose` installed")
    assert compose is not None
    info = subprocess.run(["docker", "info", "-f", "{{.ServerVersion}}"], capture_output=True, text=True, env=env)
    if info.returncode != 0:
        reason = (info.stderr.strip().splitlines() or ["?"])[-1]
        require_or_skip(f"no Docker engine at {env.get('DOCKER_HOST', 'the default socket')}: {reason}")

    password = secrets.token_hex(12)
    redis_port, dashboard_port = free_port(), free_port()
    env_file = tmp_path_factory.mktemp("compose-e2e") / "lab.env"
    env_file.write_text(
        f"REDIS_PASSWORD={password}\nREDIS_PORT={redis_port}\nMPLAB_POOL={POOL}\nDASHBOARD_PORT={dashboard_port}\n"
    )
    project = f"mplabe2e-{os.getpid()}-{secrets.token_hex(2)}"
    the_lab = Lab(compose, project, env_file, env, password, redis_port, dashboard_port)
    remove_stale_projects(the_lab)
    try:
        the_lab("up", "-d", "--build", timeout=900)
        yield the_lab
    finally:
        the_lab.redis.close()
        the_lab(*PROFILES, "down", "-v", "--remove-orphans", "--timeout", "10", timeout=300, check=False)


def remove_stale_projects(lab: Lab) -> None:
    """`down -v` the projects of earlier runs that were killed before their clean-up (their pid is gone):
    their containers restart `unless-stopped`, so nothing else would ever stop them."""
    names = lab.docker("ps", "-a", "--format", '{{.Label "com.docker.compose.project"}}').split()
    names += lab.docker("volume", "ls", "--format", '{{.Label "com.docker.compose.project"}}').split()
    for name in sorted(set(names)):
        match = re.fullmatch(r"mplabe2e-(\d+)-[0-9a-f]+", name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            stale = Lab(lab.compose, name, lab.env_file, lab.env, lab.password, lab.redis_port, lab.dashboard_port)
            stale(*PROFILES, "down", "-v", "--remove-orphans", "--timeout", "5", timeout=300, check=False)
            stale.redis.close()


# -- the cases, in the order a user meets them ---------------------------------------------------------


@pytest.mark.timeout(1200)  # includes the build (cold: a few minutes on 2 busy cores)
def test_up_is_healthy_and_status_shows_both_nodes(lab: Lab) -> None:
    (redis_container,) = lab.containers("redis")
    wait_until("redis healthy", lambda: lab.inspect(redis_container, "{{.State.Health.Status}}") == "healthy", 90)
    assert len(lab.containers("worker")) == 2
    nodes = lab.wait_nodes(2)
    assert {node["host"] for node in nodes.values()} == lab.worker_hostnames()

    # `mplab status` from the cli service, and from the host through the published port (as the README does).
    status = lab.cli("status")
    shown = {node["name"]: node for node in status["nodes"]}
    assert set(shown) == set(nodes) and not any(node["stale"] for node in shown.values()), status
    url = f"redis://:{lab.password}@127.0.0.1:{lab.redis_port}/0"
    host_side = subprocess.run(
        [sys.executable, "-m", "cli", "status", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "REDIS_URL": url},
    )
    assert host_side.returncode == 0, host_side.stderr
    assert {node["name"] for node in json.loads(host_side.stdout)["nodes"]} == set(nodes)


@pytest.mark.timeout(300)
def test_submit_single_and_batch_jobs_via_the_cli_service(lab: Lab) -> None:
    nodes = set(lab.wait_nodes(2))
    for batch in ("1", "4"):
        summary = lab.cli("submit", "cpu", "--tasks", "16", "--size", "1000000", "--batch", batch, "--wait")
        assert summary["tasks_done"] == 16 and summary["wrong_results"] == 0 and not summary["failures"], summary
        assert set(summary["tasks_per_node"]) == nodes, f"batch {batch}: {summary['tasks_per_node']} vs {nodes}"
        lab.finished += summary["job_ids"]


@pytest.mark.timeout(300)
def test_tickets_atomic_exact_and_host_lock_oversold_across_containers(lab: Lab) -> None:
    nodes = set(lab.wait_nodes(2))
    stock, buyers = 20, 40
    for mode in ("atomic", "host-lock"):
        sale = lab.cli("tickets", "submit", "--mode", mode, "--stock", str(stock), "--buyers", str(buyers), "--wait")
        summary = sale["summary"]
        assert summary["missing_buyers"] == 0 and summary["sold"] + summary["failed_buyers"] == buyers, summary
        owners: dict[int, set[str]] = defaultdict(set)
        for row in sale["outcomes"]:
            if "seat" in row:
                owners[row["seat"]].add(row["node"])
        assert set().union(*owners.values()) == nodes, f"{mode}: sold by {owners}, nodes {nodes}"
        if mode == "atomic":
            assert summary["sold"] == stock and summary["oversold"] == 0 and summary["correct"] is True, summary
        else:  # one multiprocessing.Lock per container: each container sells the whole stock
            assert summary["oversold"] > 0 and any(len(by) == 2 for by in owners.values()), summary


@pytest.mark.timeout(300)
def test_scale_to_three_nodes_and_back(lab: Lab) -> None:
    lab("up", "-d", "--scale", "worker=3")
    assert len(lab.containers("worker")) == 3
    nodes = lab.wait_nodes(3)
    assert {node["host"] for node in nodes.values()} == lab.worker_hostnames()
    lab("up", "-d", "--scale", "worker=2")
    assert len(lab.containers("worker")) == 2
    lab.wait_nodes(2, timeout=60)  # the removed node said goodbye or its heartbeat expired


@pytest.mark.timeout(600)
def test_dashboard_answers_and_lists_a_finished_job(lab: Lab) -> None:
    assert lab.finished, "no finished job from the submit case"
    lab("--profile", "dashboard", "up", "-d", "--build", "dashboard", timeout=600)

    def answers() -> bool:
        try:
            return lab.http("/")[0] == 200
        except OSError:
            return False

    wait_until("rq-dashboard answers HTTP 200", answers, 90)
    status, body = lab.http("/0/data/jobs/default/finished/100/desc/1.json")
    assert status == 200
    listed = {job["id"] for job in json.loads(body)["jobs"]}
    assert listed & set(lab.finished), f"none of {lab.finished[:3]}... in the dashboard's finished jobs {listed}"
    job_id = sorted(listed & set(lab.finished))[0]
    status, body = lab.http(f"/0/data/job/{job_id}.json")
    assert status == 200 and json.loads(body)["status"] == "finished", body[:500]


@pytest.mark.timeout(300)
def test_stop_with_jobs_running_loses_none(lab: Lab) -> None:
    """`stop worker` while both nodes run a job: SIGTERM through tini, the node finishes (or re-queues)
    them within its grace; the containers exit 0 (not SIGKILLed); after `up` every job is finished."""
    lab.wait_nodes(2)
    size = 60_000_000  # a few seconds per task: still running when the stop comes
    ids = lab.cli("submit", "cpu", "--tasks", "2", "--size", str(size))["jobs"]
    wait_until("both jobs started", lambda: (set(lab.statuses(ids).values()) == {"started"}, lab.statuses(ids)), 60)
    workers = lab.containers("worker")
    lab("stop", "worker", timeout=120)
    exits = {c[:12]: lab.inspect(c, "{{.State.ExitCode}}") for c in workers}
    assert set(exits.values()) == {"0"}, f"worker containers did not stop cleanly: {exits}"
    after_stop = lab.statuses(ids)
    assert set(after_stop.values()) <= {"finished", "queued"}, f"jobs lost or stranded by the stop: {after_stop}"

    lab("up", "-d")
    lab.wait_nodes(2)
    wait_until("every job finished", lambda: all_finished(lab, ids), 120)
    for job_id in ids:
        assert_result(lab, job_id, size)


def all_finished(lab: Lab, ids: list[str]) -> tuple[bool, Counter[str]]:
    """Whether every job is finished, and how many are in which state."""
    try:
        counts = Counter(lab.statuses(ids).values())
    except redis.RedisError as exc:
        return False, Counter({type(exc).__name__: 1})
    return set(counts) == {"finished"}, counts


def assert_result(lab: Lab, job_id: str, size: int) -> None:
    """The job's latest result is a success with the right value (else: its results and meta, to debug)."""
    from rq.job import Job
    from rq.serializers import JSONSerializer

    job = Job.fetch(job_id, connection=lab.redis, serializer=JSONSerializer)
    value = job.return_value()
    if value is None or value.get("value") != sum_squares_expected(size):
        results = [(r.type.name, r.worker_name, (r.exc_string or "")[-300:]) for r in job.results()]
        raise AssertionError(f"job {job_id} ({job.get_status()}, meta {job.meta}): value {value}, results {results}")


@pytest.mark.timeout(300)
def test_redis_restart_mid_run_loses_no_queued_or_finished_job(lab: Lab) -> None:
    """Redis restarted (stopped, 3 s down, started) with jobs finished, running and queued: the AOF on the
    volume brings all of them back (a clean stop fsyncs it), and the nodes (same containers, same
    processes) carry on until every job is finished."""
    nodes = lab.wait_nodes(2)
    workers = {c: lab.inspect(c, "{{.State.StartedAt}}") for c in lab.containers("worker")}
    size = 6_000_000
    ids = lab.cli("submit", "cpu", "--tasks", "40", "--size", str(size))["jobs"]

    def mid_run() -> tuple[bool, dict[str, str]]:
        states = lab.statuses(ids)
        counts = list(states.values())
        return counts.count("finished") >= 4 and counts.count("queued") >= 4, states

    before = wait_until("some jobs finished, some queued", mid_run, 60, step=0.05)
    lab("stop", "redis", timeout=120)
    time.sleep(3)  # long enough for running jobs to end while Redis is away
    lab("start", "redis", timeout=120)
    (redis_container,) = lab.containers("redis")
    wait_until("redis healthy again", lambda: lab.inspect(redis_container, "{{.State.Health.Status}}") == "healthy", 90)

    after = lab.statuses(ids)
    lost = {i: (before[i], after[i]) for i in ids if before[i] in ("finished", "queued") and after[i] == "missing"}
    assert not lost, f"jobs lost by the restart (before, after): {lost}"
    assert all(after[i] == "finished" for i in ids if before[i] == "finished"), (before, after)

    try:
        wait_until("every job finished after the restart", lambda: all_finished(lab, ids), 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{lab.worker_report()}") from None
    for job_id in ids:
        assert_result(lab, job_id, size)
    # The nodes resumed: the same node processes in the same containers, none restarted by Docker.
    assert set(lab.wait_nodes(2, timeout=30)) == set(nodes)
    assert {c: lab.inspect(c, "{{.State.StartedAt}}") for c in lab.containers("worker")} == workers


@pytest.mark.timeout(300)
def test_down_with_every_profile_leaves_nothing(lab: Lab) -> None:
    label = f"label=com.docker.compose.project={lab.project}"
    # The README's `down`: containers and network go, the Redis volume (the queued work) stays ...
    lab(*PROFILES, "down", timeout=180)
    assert lab.containers(all_states=True) == [], "containers left after down"
    assert lab.docker("network", "ls", "-q", "--filter", label).split() == [], "network left after down"
    volumes = lab.docker("volume", "ls", "-q", "--filter", label).split()
    assert any(re.search(r"redis-data$", v) for v in volumes), f"the Redis volume did not survive down: {volumes}"
    # ... and `down -v` removes it too.
    lab(*PROFILES, "down", "-v", "--remove-orphans", timeout=180)
    assert lab.docker("volume", "ls", "-q", "--filter", label).split() == [], "volume left after down -v"
