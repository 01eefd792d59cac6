"""`skiff up`: gateway and workers for every endpoint in a directory, on one machine."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from skiff.cli.app import app
from skiff.cli.options import EndpointsDir, StateDir, load_settings
from skiff.endpoints import EndpointFileError, load_endpoints
from skiff.spec import EndpointType

console = Console(highlight=False, soft_wrap=True)


@app.command()
def up(
    endpoints: EndpointsDir = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000]")] = None,
    state_dir: StateDir = None,
) -> None:
    """Run the gateway and the workers of every endpoint in a directory, until Ctrl-C."""
    from skiff.stack import Stack, resolve_api_key

    settings = load_settings(endpoints_dir=endpoints, host=host, port=port, state_dir=state_dir)
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

    logging.basicConfig(
        level=os.environ.get("SKIFF_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s"
    )
    key = resolve_api_key(settings)
    stack = Stack(settings, list(specs.values()), key.value, project_dir=Path.cwd())
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        _print_banner(settings.gateway_url, key.value, key.generated, key.source, specs)

    async def main() -> None:
        announcer = asyncio.create_task(announce())
        try:
            await stack.serve(on_ready=ready)
        finally:
            announcer.cancel()

    try:
        asyncio.run(main())
    except OSError as exc:
        typer.echo(f"skiff: cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    console.print("skiff: stopped; all workers exited.")


def _print_banner(url: str, key: str, generated: bool, source: str, specs: dict) -> None:  # type: ignore[type-arg]
    table = Table(title=None, show_edge=False, box=None, padding=(0, 2))
    table.add_column("endpoint", style="bold")
    table.add_column("type")
    table.add_column("URL")
    for name, spec in specs.items():
        path = f"/lb/{name}/" if spec.type is EndpointType.LOAD_BALANCER else f"/v2/{name}/runsync"
        table.add_row(name, spec.type.value, url + path)
    console.print(f"[bold green]Skiff is up[/] at {url}")
    origin = f"generated and saved to {source}" if generated else f"from {source}"
    console.print(f"API key ({origin}): [bold]{key}[/]")
    console.print(table)
    first = next(iter(specs))
    console.print(
        "Try it:\n"
        f"  curl -s -X POST {url}/v2/{first}/runsync -H 'Authorization: Bearer {key}' "
        '-H \'Content-Type: application/json\' -d \'{"input": {"hello": "world"}}\''
    )
    console.print("Press Ctrl-C to stop.")
