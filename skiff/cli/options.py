"""Options shared by several commands, and turning them into Settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from skiff.config import Settings

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
