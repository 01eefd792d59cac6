"""`skiff validate [PATH]`: check endpoint files without starting anything.

Exit status: 0 when every endpoint is valid, 1 when a file has problems (each printed on its
own line to stderr as `file:line: field: message`), 2 when PATH does not exist.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from skiff_cli.app import app
from skiff_cli.secret_hints import secret_like_env
from skiff_core.durations import format_duration
from skiff_core.endpoints import EndpointFileError, endpoint_files, load_endpoint_file, load_endpoints
from skiff_core.spec import EndpointSpec, EndpointType, ScalerType

DEFAULT_DIR = Path("examples/endpoints")


@app.command()
def validate(
    path: Annotated[
        Path, typer.Argument(help="A directory of endpoint files (*.hcl), or one endpoint file.")
    ] = DEFAULT_DIR,
) -> None:
    """Check endpoint files: print a summary, or every problem with file, line and field."""
    if not path.exists():
        _fail(2, f"skiff validate: {path}: no such file or directory")
    if path.is_dir() and not endpoint_files(path):
        _fail(1, f"skiff validate: {path}: no endpoint files (*.hcl) in this directory")
    try:
        specs = list(load_endpoints(path).values()) if path.is_dir() else load_endpoint_file(path)
    except EndpointFileError as exc:
        count = len(exc.problems)
        _fail(1, f"{exc}\nskiff validate: {count} problem{'s' if count != 1 else ''} in {path}")
    # Rows never wrap nor truncate: a pipe or a narrow terminal still gets one line per endpoint.
    console = Console(width=max(Console().width, 120))
    console.print(_table(specs))
    console.print(f"{len(specs)} endpoint{'s' if len(specs) != 1 else ''} OK in {path}", highlight=False)
    for spec in specs:
        for name in secret_like_env(spec):
            # A warning, not a problem: the exit status stays 0.
            sys.stderr.write(
                f'warning: endpoint "{spec.name}": env.{name} looks like a secret, and `env` is written '
                f"into the Nomad job in clear text: list it in `secrets` and set it with "
                f"`skiff secrets set {spec.name} {name}`\n"
            )


def _fail(code: int, message: str) -> None:
    # Plain text, not rich: problems quote HCL (`[...]`, `{...}`) that rich would read as markup.
    sys.stderr.write(message + "\n")
    raise typer.Exit(code)


def _table(specs: list[EndpointSpec]) -> Table:
    table = Table()
    for column in ("name", "type", "workers", "scaler", "timeout", "gpu"):
        table.add_column(column, no_wrap=True)
    for spec in specs:
        scaling = spec.scaling
        if scaling.scaler is ScalerType.QUEUE_DELAY:
            scaler = f"queue_delay > {format_duration(scaling.target)}"
        else:
            scaler = f"request_count {scaling.target:g}/worker"
        gpu = "-" if spec.gpu is None or spec.gpu.count == 0 else f"{spec.gpu.count}"
        table.add_row(
            spec.name,
            spec.type.value,
            f"{scaling.min_workers}-{scaling.max_workers}",
            scaler,
            "-" if spec.type is EndpointType.LOAD_BALANCER else format_duration(spec.execution_timeout),
            gpu,
        )
    return table
