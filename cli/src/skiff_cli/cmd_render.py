"""`skiff render ENDPOINT`: print the Nomad job Skiff submits for an endpoint.

`--format json` (default) prints the `{"Job": {...}}` body of `POST /v1/jobs`; `--format hcl` the
same job as a jobspec for `nomad job run`. Nothing is sent anywhere, and no worker key is
printed: the job's template reads it from the Nomad Variable `nomad/jobs/skiff-<name>`, which
`skiff deploy` and the controller write.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from skiff_cli.app import app
from skiff_cli.options import EndpointsDir, load_settings
from skiff_core.endpoints import EndpointFileError, load_endpoints
from skiff_core.nomad.render import ImageReferenceError, RenderOptions, render_hcl, render_job


class Format(StrEnum):
    JSON = "json"
    HCL = "hcl"


class DriverChoice(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    RAW_EXEC = "raw_exec"


def _fail(code: int, message: str) -> None:
    sys.stderr.write(message + "\n")
    raise typer.Exit(code)


@app.command()
def render(
    endpoint: Annotated[str, typer.Argument(help="The endpoint's name.")],
    endpoints: EndpointsDir = None,
    format: Annotated[
        Format, typer.Option("--format", help="json: the POST /v1/jobs body; hcl: a jobspec")
    ] = Format.JSON,
    driver: Annotated[
        DriverChoice, typer.Option("--driver", help="docker (image), raw_exec (command, for `nomad agent -dev`), auto")
    ] = DriverChoice.AUTO,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="raw_exec: directory a relative command runs from")
    ] = None,
) -> None:
    """Print the Nomad job for ENDPOINT (JSON for the API, or HCL)."""
    settings = load_settings(endpoints_dir=endpoints)
    try:
        specs = load_endpoints(settings.endpoints_dir)
    except EndpointFileError as exc:
        _fail(1, str(exc))
    spec = specs.get(endpoint)
    if spec is None:
        known = ", ".join(sorted(specs)) or "none"
        _fail(1, f"skiff render: no endpoint {endpoint!r} in {settings.endpoints_dir} (endpoints: {known})")
        return
    options = RenderOptions(driver=driver.value, workdir=workdir.resolve() if workdir else None)
    try:
        if format is Format.HCL:
            sys.stdout.write(render_hcl(spec, settings, options))
        else:
            sys.stdout.write(json.dumps(render_job(spec, settings, options), indent=2) + "\n")
    except (ImageReferenceError, ValueError) as exc:
        _fail(1, f"skiff render: endpoint {endpoint!r}: {exc}")
