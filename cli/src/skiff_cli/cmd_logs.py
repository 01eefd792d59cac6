"""`skiff logs ENDPOINT [-f]`: the output of an endpoint's workers (embedded mode)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, BinaryIO

import typer

from skiff_cli.app import app
from skiff_cli.options import StateDir, load_settings


@app.command()
def logs(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output")] = False,
    state_dir: StateDir = None,
) -> None:
    """Print the output of an endpoint's workers, oldest worker first."""
    settings = load_settings(state_dir=state_dir)
    directory = settings.state_dir / "logs" / endpoint
    if not directory.is_dir():
        typer.echo(f"skiff: no logs for endpoint {endpoint!r} under {directory}", err=True)
        raise typer.Exit(1)
    open_files: dict[Path, BinaryIO] = {}
    try:
        while True:
            for path in sorted(directory.glob("*.log"), key=lambda p: p.stat().st_mtime):
                if path not in open_files:
                    open_files[path] = path.open("rb")
                _pump(open_files[path], path.stem)
            if not follow:
                return
            time.sleep(0.3)
    except KeyboardInterrupt:
        pass
    finally:
        for handle in open_files.values():
            handle.close()


def _pump(handle: BinaryIO, worker: str) -> None:
    for raw in handle.readlines():
        typer.echo(f"[{worker}] {raw.decode(errors='replace').rstrip()}")
