"""`mplab redis up|down|status|url|env`: keep one embedded redis-server running across commands."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from cli.base import JsonOpt, console, err_console, new_app, print_json, settings_of
from workers import heartbeat, redis_server
from workers.errors import InUse, NotFound, RedisUnavailable
from workers.redis_server import RedisServer
from workers.settings import Settings

app = new_app("Keep one embedded redis-server running for several commands (nodes, submit, status).")


@app.command()
def up(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Start a private redis-server in the background and record its URL for later commands."""
    settings = settings_of(ctx)
    server, started = redis_server.up(settings.state_dir)
    info = {**server.info(), "url": redis_server.redact(server.url), "started": started}
    if json:
        print_json(info)
        return
    verb = "started" if started else "already running"
    console.print(f"redis-server {verb}: pid {server.pid}, 127.0.0.1:{server.port} ({server.source} {server.binary})")
    console.print("later mplab commands use it; for other tools: `mplab redis url` or `eval $(mplab redis env)`")


def _live_nodes(server: RedisServer) -> list[str]:
    try:
        with redis_server.connect(server.url) as client:
            return [node.name for node in heartbeat.live_nodes(client)]
    except RedisUnavailable:
        return []


@app.command()
def down(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop it even while worker nodes use it.")] = False,
    json: JsonOpt = False,
) -> None:
    """Stop the server started by `mplab redis up` (refused while live nodes are attached, unless --force)."""
    state_dir = settings_of(ctx).state_dir
    server = redis_server.read_state(state_dir)
    if server is None:
        raise NotFound("no `mplab redis up` server is running")
    nodes = _live_nodes(server)
    if nodes and not force:
        raise InUse(
            f"{len(nodes)} live worker node(s) use this server ({', '.join(nodes)}): stop them first, or pass --force"
        )
    if nodes:
        err_console.print(f"[yellow]warning:[/yellow] stopping it under {len(nodes)} live node(s)")
    stopped = redis_server.down(state_dir)
    pid = stopped.pid if stopped else server.pid
    if json:
        print_json({"stopped": pid})
    else:
        console.print(f"stopped redis-server pid {pid}")


def _kept_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    server = redis_server.read_state(settings.state_dir)
    if server is None:
        raise NotFound("no `mplab redis up` server is running (and no --redis-url / REDIS_URL given)")
    return server.url


@app.command()
def url(ctx: typer.Context) -> None:
    """Print the full URL (password included) of the kept server, for other tools: rq info -u "$(mplab redis url)"."""
    console.print(_kept_url(settings_of(ctx)), highlight=False, soft_wrap=True)


@app.command()
def env(ctx: typer.Context) -> None:
    """Print `export REDIS_URL=...` for the kept server: eval "$(mplab redis env)"."""
    console.print(f"export REDIS_URL={shlex.quote(_kept_url(settings_of(ctx)))}", highlight=False, soft_wrap=True)


@app.command("status")
def status_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show the `mplab redis up` server, if any, and which redis-server binary would be used."""
    settings = settings_of(ctx)
    server = redis_server.read_state(settings.state_dir)
    try:
        binary, source = redis_server.find_redis_server()
    except RedisUnavailable as exc:  # reported, not raised: status must always answer
        binary, source = str(exc), "none"
    info = {
        "running": server is not None,
        "pid": server.pid if server else None,
        "url": redis_server.redact(server.url) if server else None,
        "binary": binary,
        "source": source,
    }
    if json:
        print_json(info)
    elif server:
        console.print(f"running: pid {server.pid}, {info['url']} ({source})")
    else:
        console.print(f"not running; `mplab redis up` would start {binary} ({source})")
