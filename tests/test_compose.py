"""The compose lab: docker-compose.yml as Compose itself resolves it, the Dockerfile and .dockerignore.

No Docker engine is needed: `docker compose config` (v2, JSON output) or `docker-compose config` (v1,
YAML output) only validates and interpolates the file. Without either tool the compose tests skip,
unless CI is set, where they fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.compose_tools import find_compose

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
ENV_EXAMPLE = REPO / ".env.example"

# Variables the compose file interpolates: the tests set them explicitly or not at all.
LAB_VARS = ("REDIS_PASSWORD", "REDIS_PORT", "REDIS_BIND", "MPLAB_POOL", "DASHBOARD_PORT")
PROFILES = ("dashboard", "cli")
YAML_TO_JSON = "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"


# -- running `compose config` ------------------------------------------------------------------------


def _find_compose() -> tuple[list[str], int]:
    """The compose command line and its major version; skip (or fail on CI) if there is none."""
    found = find_compose()
    if found is not None:
        return found
    message = "neither `docker compose` (v2) nor `docker-compose` (v1) is installed"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must validate docker-compose.yml: install one of them")
    pytest.skip(message)


def _yaml_load(text: str, compose_cmd: list[str]) -> Any:
    """Parse v1's YAML output: with PyYAML if this interpreter has it, else with docker-compose's own
    Python (v1 is a Python program that depends on PyYAML)."""
    try:
        import yaml
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    with open(compose_cmd[0], "rb") as script:
        shebang = script.readline().decode(errors="replace")
    if not (shebang.startswith("#!") and "python" in shebang):
        pytest.fail(f"cannot parse docker-compose's YAML: no PyYAML here and {compose_cmd[0]} is not Python")
    proc = subprocess.run(
        [*shlex.split(shebang[2:]), "-c", YAML_TO_JSON],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"YAML to JSON with {shebang.strip()} failed: {proc.stderr}"
    return json.loads(proc.stdout)


def compose_config(env_file: Path, **lab_vars: str) -> dict[str, Any]:
    """`compose config` of docker-compose.yml with every profile, the given env file and variables."""
    cmd, major = _find_compose()
    env = {k: v for k, v in os.environ.items() if k not in LAB_VARS and not k.startswith("COMPOSE_")}
    env.update(lab_vars)
    profiles = [arg for name in PROFILES for arg in ("--profile", name)]
    args = [*cmd, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), *profiles, "config"]
    if major >= 2:
        args += ["--format", "json"]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stderr}"
    config = json.loads(proc.stdout) if major >= 2 else _yaml_load(proc.stdout, cmd)
    assert isinstance(config, dict) and isinstance(config.get("services"), dict), config
    return config


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stands in for `.env`, so a developer's real `.env` cannot change what the tests see."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def services(empty_env_file: Path) -> dict[str, Any]:
    """Resolved services with every lab variable unset: the compose file's own defaults."""
    resolved: dict[str, Any] = compose_config(empty_env_file)["services"]
    return resolved


# -- normalising v1/v2 differences ---------------------------------------------------------------------


def command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(part) for part in cmd]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) per port; v1 gives "ip:published:target/proto", v2 mappings."""
    result = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            result.append((port.get("host_ip") or "", str(port.get("published") or ""), str(port["target"])))
            continue
        parts = str(port).split("/", 1)[0].split(":")
        parts = [""] * (3 - len(parts)) + parts
        result.append((parts[0], parts[1], parts[2]))
    return result


def seconds(duration: str | int | float) -> float:
    """A compose duration ("40s", "1m30s", "1m") in seconds; v2's JSON may give nanoseconds."""
    if isinstance(duration, int | float):
        return duration / 1e9 if duration > 10_000 else float(duration)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unparsable duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def assert_redis_url(url: str, password: str) -> None:
    parts = urlsplit(url)
    assert parts.scheme == "redis", url
    assert parts.hostname == "redis", f"{url}: must reach the `redis` service by its name"
    assert parts.port == 6379, url
    assert parts.password == password, url
    assert parts.path == "/0", url


def assert_localhost_only(service: dict[str, Any], published: str, target: str) -> None:
    ports = published_ports(service)
    assert ports == [("127.0.0.1", published, target)], f"expected only 127.0.0.1:{published}:{target}: {ports}"


# -- the compose file --------------------------------------------------------------------------------


def test_lab_services_exist(services: dict[str, Any]) -> None:
    assert {"redis", "worker", "dashboard", "cli"} <= set(services)


def test_redis_is_password_protected_durable_and_local(services: dict[str, Any], empty_env_file: Path) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7"), redis["image"]
    cmd = command(redis)
    assert cmd[0] == "redis-server", cmd
    assert cmd[cmd.index("--requirepass") + 1] == "mplab"
    # Durable: every write in the AOF, fsync'd every second, in /data ...
    assert cmd[cmd.index("--appendonly") + 1] == "yes", cmd
    assert cmd[cmd.index("--appendfsync") + 1] == "everysec", cmd
    assert cmd[cmd.index("--dir") + 1] == "/data", cmd
    # ... which is a named volume (it outlives the container; `down -v` deletes it).
    mounts = [_mount(volume) for volume in redis.get("volumes") or []]
    named = [source for kind, source, target in mounts if target == "/data" and kind == "volume"]
    assert named, f"/data must be a named volume: {mounts}"
    volumes = compose_config(empty_env_file).get("volumes") or {}
    assert named[0] in volumes or any(named[0].endswith("_" + v) for v in volumes), (named, volumes)
    # Not 6379 on the host: a host's own Redis would make `up` fail.
    assert_localhost_only(redis, "16379", "6379")


def _mount(volume: str | dict[str, Any]) -> tuple[str, str, str]:
    """(type, source, target) of a service volume, v1 ("src:dst[:mode]") or v2 (a mapping)."""
    if isinstance(volume, dict):
        return volume.get("type", "volume"), str(volume.get("source", "")), str(volume["target"])
    source, target = volume.split(":")[:2]
    return ("bind" if source.startswith(("/", ".")) else "volume"), source, target


def test_redis_healthcheck_pings_with_the_password(services: dict[str, Any]) -> None:
    redis = services["redis"]
    test = redis["healthcheck"]["test"]
    if isinstance(test, list):
        assert test[0] in ("CMD", "CMD-SHELL"), test
        text = " ".join(test[1:])
    else:
        text = test
    assert "redis-cli" in text and "ping" in text, text
    # The check must authenticate: via -a/REDISCLI_AUTH from the container's REDIS_PASSWORD ...
    assert "REDIS_PASSWORD" in text or "REDISCLI_AUTH" in environment(redis), text
    assert environment(redis).get("REDIS_PASSWORD", environment(redis).get("REDISCLI_AUTH")) == "mplab"
    # ... and must not pass on an auth error, which redis-cli reports with exit status 0.
    assert "PONG" in text, f"healthcheck must look for PONG: {text}"


def test_worker_runs_mplab_worker_nodes_against_the_redis_service(services: dict[str, Any]) -> None:
    worker = services["worker"]
    cmd = command(worker)
    assert cmd[:2] == ["mplab", "worker"], cmd
    assert cmd[cmd.index("--pool") + 1] == "2", cmd
    assert_redis_url(environment(worker)["REDIS_URL"], "mplab")
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["image"] == "mplab:latest"
    assert "target" not in worker["build"], "workers run the Dockerfile's default (last) stage"


def test_worker_scales_and_stops_gracefully(services: dict[str, Any]) -> None:
    worker = services["worker"]
    assert worker["deploy"]["replicas"] == 2
    # Replicas cannot share a container name or a published host port.
    assert "container_name" not in worker and not worker.get("ports")
    assert worker.get("init") is True, "PID 1 must forward SIGTERM to the node"
    # The node drains for up to 30 s after SIGTERM; Compose must not SIGKILL it before that.
    assert seconds(worker["stop_grace_period"]) > 30


def test_dashboard_reads_jobs_with_the_json_serializer(services: dict[str, Any]) -> None:
    dashboard = services["dashboard"]
    assert dashboard["profiles"] == ["dashboard"]
    cmd, env = command(dashboard), environment(dashboard)
    assert cmd and cmd[0] == "rq-dashboard", cmd
    assert "--json" in cmd or "-j" in cmd or env.get("RQ_DASHBOARD_JSON", "").lower() in ("1", "true"), (
        f"rq-dashboard must use RQ's JSONSerializer (--json): {cmd} {env}"
    )
    assert_redis_url(env["RQ_DASHBOARD_REDIS_URL"], "mplab")
    assert_localhost_only(dashboard, "9181", "9181")
    assert dashboard["depends_on"]["redis"]["condition"] == "service_healthy"


def test_cli_is_the_mplab_image_behind_a_profile(services: dict[str, Any]) -> None:
    cli, worker = services["cli"], services["worker"]
    assert cli["profiles"] == ["cli"]
    assert cli["image"] == worker["image"] == "mplab:latest"
    assert environment(cli)["REDIS_URL"] == environment(worker)["REDIS_URL"]
    assert "profiles" not in worker and "profiles" not in services["redis"], "the core lab needs no profile"


def test_variables_flow_into_every_service(empty_env_file: Path) -> None:
    """One REDIS_PASSWORD for the server, its healthcheck and every client URL; ports and pool too."""
    services = compose_config(
        empty_env_file, REDIS_PASSWORD="s3cret-pw", REDIS_PORT="26379", MPLAB_POOL="3", DASHBOARD_PORT="19181"
    )["services"]
    redis_cmd = command(services["redis"])
    assert redis_cmd[redis_cmd.index("--requirepass") + 1] == "s3cret-pw"
    assert "s3cret-pw" in environment(services["redis"]).values()
    assert_redis_url(environment(services["worker"])["REDIS_URL"], "s3cret-pw")
    assert_redis_url(environment(services["cli"])["REDIS_URL"], "s3cret-pw")
    assert_redis_url(environment(services["dashboard"])["RQ_DASHBOARD_REDIS_URL"], "s3cret-pw")
    assert_localhost_only(services["redis"], "26379", "6379")
    assert_localhost_only(services["dashboard"], "19181", "9181")
    opened = compose_config(empty_env_file, REDIS_BIND="0.0.0.0")["services"]
    assert published_ports(opened["redis"]) == [("0.0.0.0", "16379", "6379")], "REDIS_BIND opens Redis to the network"
    assert_localhost_only(opened["dashboard"], "9181", "9181")
    worker_cmd = command(services["worker"])
    assert worker_cmd[worker_cmd.index("--pool") + 1] == "3"


def test_env_example_documents_the_defaults(services: dict[str, Any]) -> None:
    """Using .env.example as `.env` changes nothing: it documents exactly the built-in defaults."""
    documented = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert set(LAB_VARS) <= set(documented), documented
    assert compose_config(ENV_EXAMPLE)["services"] == services


def test_compose_build_targets_are_dockerfile_stages(services: dict[str, Any]) -> None:
    stage_names = {stage.name for stage in dockerfile_stages()}
    targets = {svc["build"].get("target") for svc in services.values() if isinstance(svc.get("build"), dict)}
    assert "dashboard" in targets
    assert targets - {None} <= stage_names, f"build targets {targets} vs stages {stage_names}"


# -- the Dockerfile ------------------------------------------------------------------------------------


class Stage:
    def __init__(self, base: str, name: str | None) -> None:
        self.base, self.name = base, name
        self.instructions: list[tuple[str, str]] = []

    def chain(self, stages: list[Stage]) -> list[Stage]:
        """This stage and the stages it is built FROM, nearest first."""
        by_name = {stage.name: stage for stage in stages if stage.name}
        chain: list[Stage] = [self]
        while chain[-1].base in by_name:
            chain.append(by_name[chain[-1].base])
        return chain


def dockerfile_stages() -> list[Stage]:
    """The Dockerfile's stages with their instructions (continuations joined, comments dropped)."""
    logical, pending = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    assert stages, "Dockerfile has no FROM"
    return stages


def exec_form(value: str) -> list[str]:
    """Arguments of CMD/ENTRYPOINT/COPY in JSON or shell form, without leading --flags."""
    args = list(json.loads(value)) if value.startswith("[") else shlex.split(value)
    while args and args[0].startswith("--"):
        args.pop(0)
    return args


def pip_installs(run: str) -> list[list[str]]:
    """The arguments of each `pip install` in a RUN shell command."""
    result = []
    for command in re.split(r"&&|\|\||;", run):
        words = shlex.split(command)
        for i in range(len(words) - 1):
            if words[i].endswith("pip") and words[i + 1] == "install":
                result.append(words[i + 2 :])
                break
    return result


def test_dockerfile_default_stage_installs_the_project_and_runs_mplab() -> None:
    stages = dockerfile_stages()
    final = stages[-1]
    chain = final.chain(stages)
    assert chain[-1].base == "python:3.11-slim", f"base image is {chain[-1].base}"
    instructions = [ins for stage in reversed(chain) for ins in stage.instructions]
    # The project directory is copied in and that copy is pip-installed.
    copied = {
        exec_form(arg)[-1].rstrip("/") or "/"
        for kw, arg in instructions
        if kw == "COPY" and exec_form(arg)[0] in (".", "./")
    }
    assert copied, "the build context (.) is never copied"
    installs = [args for kw, arg in instructions if kw == "RUN" for args in pip_installs(arg)]
    assert any(
        "--no-cache-dir" in args and ({"."} | copied) & {a.rstrip("/") or "/" for a in args} for args in installs
    ), f"no `pip install --no-cache-dir <project>` of {copied}: {installs}"
    # The default command is the mplab CLI, run as a non-root user.
    entrypoints = [exec_form(arg) for kw, arg in instructions if kw == "ENTRYPOINT"]
    cmds = [exec_form(arg) for kw, arg in instructions if kw == "CMD"]
    runs = entrypoints[-1] if entrypoints else cmds[-1] if cmds else []
    assert runs and runs[0] == "mplab", f"the image's default command is {runs}"
    users = [arg for kw, arg in instructions if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), f"image runs as {users[-1] if users else 'root'}"


def test_dockerfile_dashboard_stage() -> None:
    stages = dockerfile_stages()
    (dashboard,) = [stage for stage in stages if stage.name == "dashboard"]
    assert dashboard is not stages[-1], "the dashboard must not be the default stage"
    runs = " ".join(arg for kw, arg in dashboard.instructions if kw == "RUN")
    assert "rq-dashboard" in runs and "six" in runs.split(), "rq-dashboard 0.9.0 imports six without requiring it"
    # Built on the stage with the project installed, so it has the workers' rq version.
    assert len(dashboard.chain(stages)) > 1
    cmd = exec_form([arg for kw, arg in dashboard.instructions if kw == "CMD"][-1])
    assert cmd[0] == "rq-dashboard" and "--json" in cmd, cmd


def test_dockerignore_keeps_the_context_small_but_installable() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    for excluded in (".venv", ".git", ".env"):
        assert excluded in patterns, f"{excluded} must be in .dockerignore"
    ignores = [p.lstrip("/") for p in patterns if not p.startswith("!")]
    for needed in ("pyproject.toml", "README.md", "tasks/cpu.py", "workers/settings.py", "cli/main.py"):
        hits = [p for p in ignores if fnmatch.fnmatch(needed, p) or fnmatch.fnmatch(needed.split("/")[0], p)]
        assert not hits, f"{needed} is needed by `pip install .` but .dockerignore excludes it: {hits}"
