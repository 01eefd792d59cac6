"""`skiff apply DIR`: make a running stack serve exactly the endpoint files in DIR.

The files are parsed and validated here (errors name file, line and field), then sent to the
gateway (POST /v1/apply), which adds, changes (rolling replacement) and removes endpoints and
answers what changed. `command` paths are resolved by the stack, from the directory it runs in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from skiff_cli.app import app
from skiff_cli.cmd_status import GatewayUrl, admin_call
from skiff_cli.options import StateDir, load_dir_or_exit, load_settings


@app.command()
def apply(
    directory: Annotated[Path, typer.Argument(help="Directory of endpoint files (*.hcl)")],
    url: GatewayUrl = None,
    state_dir: StateDir = None,
) -> None:
    """Apply a directory of endpoint files to a running stack and print what changed."""
    settings = load_settings(state_dir=state_dir)
    if not directory.is_dir():
        typer.echo(f"skiff: {directory} is not a directory", err=True)
        raise typer.Exit(2)
    specs = load_dir_or_exit(directory, empty_note="; refusing to remove every endpoint")
    body = {"endpoints": [spec.model_dump(mode="json") for spec in specs.values()]}
    result = admin_call(settings, url, "POST", "/v1/apply", body)
    for verb, mark in (("added", "+"), ("changed", "~"), ("removed", "-")):
        for name in result.get(verb, []):
            typer.echo(f"{mark} {name} ({verb})")
    unchanged = result.get("unchanged", [])
    if not any(result.get(v) for v in ("added", "changed", "removed")):
        typer.echo(f"no changes ({len(unchanged)} endpoint(s) up to date)")
    elif unchanged:
        typer.echo(f"  {len(unchanged)} unchanged")
