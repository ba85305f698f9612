"""`mplab redis up|down|status`: keep one embedded redis-server running across commands."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.base import console, new_app, print_json, settings_of
from workers import redis_server
from workers.errors import NotFound

app = new_app("Keep one embedded redis-server running for several commands (nodes, submit, status).")
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


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
    console.print(f"later mplab commands use it; to use it elsewhere: REDIS_URL={server.url}")


@app.command()
def down(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Stop the server started by `mplab redis up`."""
    server = redis_server.down(settings_of(ctx).state_dir)
    if server is None:
        raise NotFound("no `mplab redis up` server is running")
    if json:
        print_json({"stopped": server.pid})
    else:
        console.print(f"stopped redis-server pid {server.pid}")


@app.command("status")
def status_(ctx: typer.Context, json: JsonOpt = False) -> None:
    """Show the `mplab redis up` server, if any, and which redis-server binary would be used."""
    settings = settings_of(ctx)
    server = redis_server.read_state(settings.state_dir)
    try:
        binary, source = redis_server.find_redis_server()
    except Exception as exc:  # noqa: BLE001 - reported, not raised: status must always answer
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
