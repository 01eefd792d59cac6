"""Options shared by several commands, and turning them into Settings."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from skiff_core.config import Settings
from skiff_core.endpoints import EndpointFileError, load_endpoints
from skiff_core.spec import EndpointSpec

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="Where the database, logs and API key live [default: .skiff]")
]
EndpointsDir = Annotated[
    Path | None,
    typer.Option("--endpoints", help="Directory of endpoint files (*.hcl) [default: examples/endpoints]"),
]

Host = Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")]
Port = Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")]


def setup_logging() -> None:
    """Log lines of the long-running commands; SKIFF_LOG_LEVEL raises or lowers the bar."""
    logging.basicConfig(
        level=os.environ.get("SKIFF_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )


def load_settings(**overrides: Any) -> Settings:
    """Settings from env/skiff.toml with the CLI flags that were given on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"])
            typer.echo(f"skiff: invalid setting {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from None


def load_specs_or_exit(settings: Settings) -> dict[str, EndpointSpec]:
    """The endpoints of settings.endpoints_dir, or a clear message and exit code 2 (no such
    directory) / 1 (bad or no endpoint files)."""
    if not settings.endpoints_dir.is_dir():
        typer.echo(f"skiff: endpoints directory {settings.endpoints_dir} does not exist", err=True)
        raise typer.Exit(2)
    return load_dir_or_exit(settings.endpoints_dir)


def load_dir_or_exit(directory: Path, *, empty_note: str = "") -> dict[str, EndpointSpec]:
    """The endpoints of an existing directory, or the problems (file:line) and exit code 1;
    an empty directory is an error too (`empty_note` says why, where it matters)."""
    try:
        specs = load_endpoints(directory)
    except EndpointFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not specs:
        typer.echo(f"skiff: no endpoint files (*.hcl) in {directory}{empty_note}", err=True)
        raise typer.Exit(1)
    return specs
