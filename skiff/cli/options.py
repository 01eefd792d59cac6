"""Options shared by several commands, and turning them into Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from skiff.config import Settings
from skiff.endpoints import EndpointFileError, load_endpoints
from skiff.spec import EndpointSpec

StateDir = Annotated[
    Path | None, typer.Option("--state-dir", help="Where the database, logs and API key live [default: .skiff]")
]
EndpointsDir = Annotated[
    Path | None,
    typer.Option("--endpoints", help="Directory of endpoint files (*.hcl) [default: examples/endpoints]"),
]


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
    try:
        specs = load_endpoints(settings.endpoints_dir)
    except EndpointFileError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if not specs:
        typer.echo(f"skiff: no endpoint files (*.hcl) in {settings.endpoints_dir}", err=True)
        raise typer.Exit(1)
    return specs
