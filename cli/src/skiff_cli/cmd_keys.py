"""`skiff keys create|list|revoke`: client API keys of a running stack.

Talks to a gateway's admin API (POST/GET/DELETE /v1/keys) with the admin key (SKIFF_API_KEY, or
the one `skiff up` saved in <state_dir>/api-key). The gateway writes to the job store, so in a
cluster any replica will do and every replica sees the change: a new key works at once, a revoked
one stops within SKIFF_KEY_CACHE_S (5 s) on the other replicas. No restart, no worker touched.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from skiff_cli.app import app
from skiff_cli.cmd_status import GatewayUrl, admin_call
from skiff_cli.options import StateDir, load_settings

keys_app = typer.Typer(
    help="Create, list and revoke client API keys of a running stack (needs the admin key).",
    no_args_is_help=True,
)
app.add_typer(keys_app, name="keys")
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


@keys_app.command("create")
def create(
    read_only: Annotated[
        bool, typer.Option("--read-only/--read-write", help="Read-only: status, stream and health only")
    ] = False,
    endpoint: Annotated[
        list[str] | None, typer.Option("--endpoint", "-e", help="Valid for this endpoint only (repeatable)")
    ] = None,
    name: Annotated[str, typer.Option("--name", help="A label shown by `skiff keys list`")] = "",
    url: GatewayUrl = None,
    state_dir: StateDir = None,
) -> None:
    """Create a key and print it (the only time it is shown: the stack keeps only its hash)."""
    settings = load_settings(state_dir=state_dir)
    body = {"scope": "read" if read_only else "write", "endpoints": endpoint or None, "name": name}
    created = admin_call(settings, url, "POST", "/v1/keys", body)
    typer.echo(created["key"])
    where = ", ".join(created["endpoints"]) if created["endpoints"] else "every endpoint"
    typer.echo(f"id {created['id']}: {created['scope']} on {where}; store it now, it is not shown again", err=True)


@keys_app.command("list")
def list_keys(url: GatewayUrl = None, state_dir: StateDir = None) -> None:
    """List the keys (ids, scopes, endpoints; never the keys themselves)."""
    settings = load_settings(state_dir=state_dir)
    listed = admin_call(settings, url, "GET", "/v1/keys")["keys"]
    table = Table(show_edge=False, box=None, padding=(0, 2))
    for column in ("id", "scope", "endpoints", "name", "created"):
        table.add_column(column)
    for key in listed:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(key["created_at"]))
        endpoints = ", ".join(key["endpoints"]) if key["endpoints"] else "all"
        table.add_row(key["id"], key["scope"], endpoints, key["name"], created)
    console.print(table if listed else "no client keys (the admin key is not listed)")


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id, from `skiff keys list`")],
    url: GatewayUrl = None,
    state_dir: StateDir = None,
) -> None:
    """Revoke a key: refused at once by the gateway asked, by every replica within SKIFF_KEY_CACHE_S."""
    settings = load_settings(state_dir=state_dir)
    admin_call(settings, url, "DELETE", f"/v1/keys/{key_id}")
    typer.echo(f"revoked {key_id}")
