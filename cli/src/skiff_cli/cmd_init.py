"""`skiff init NAME`: write a worker project to start from (skiff_cli/scaffold.py).

Exit status: 0 written, 1 a file it would write already exists (nothing is written), 2 a bad
name or option.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from skiff_cli.app import app
from skiff_cli.scaffold import ScaffoldExists, Sdk, write_project
from skiff_core.spec import NAME_RE, EndpointType


@app.command()
def init(
    name: Annotated[str, typer.Argument(help="The endpoint's name: lowercase letters, digits and dashes.")],
    sdk: Annotated[
        Sdk, typer.Option("--sdk", help="The SDK the handler is written for: Skiff's, or Runpod's official one.")
    ] = Sdk.SKIFF,
    kind: Annotated[
        EndpointType,
        typer.Option("--type", help="queue: a handler takes jobs; load_balancer: an HTTP server gets requests."),
    ] = EndpointType.QUEUE,
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Where to write the project [default: ./NAME]")
    ] = None,
) -> None:
    """Write a worker project: handler, test_input.json, Dockerfile, endpoints/NAME.hcl, README.

    Never overwrites: when any of these files exists, nothing is written."""
    if not NAME_RE.match(name):
        sys.stderr.write(
            f"skiff init: {name!r} is not an endpoint name: 1-63 lowercase letters, digits and dashes, "
            "starting and ending with a letter or digit\n"
        )
        raise typer.Exit(2)
    target = directory if directory is not None else Path(name)
    try:
        written = write_project(target, name, sdk, kind)
    except ScaffoldExists as exc:
        sys.stderr.write(f"skiff init: not overwriting {exc}\n")
        raise typer.Exit(1) from None
    except ValidationError as exc:  # pragma: no cover - the name was checked above
        sys.stderr.write(f"skiff init: {exc}\n")
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path}")
    typer.echo(f"\nNext: cd {target} && python handler.py   (README.md has the four steps)")
