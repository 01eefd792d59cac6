"""`skiff up`: gateway, controller and workers for every endpoint in a directory, on one machine.

The endpoints directory is watched (watchfiles): saving an endpoint file applies it live, as
`skiff apply` would. A file with errors is reported and the running endpoints are left as they
were. A second `skiff up` on the same state dir serves the API and stands by as controller.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from skiff_cli.app import app
from skiff_cli.diagnostics import dump_tasks_on_sigusr2
from skiff_cli.options import EndpointsDir, Host, Port, StateDir, load_settings, load_specs_or_exit, setup_logging
from skiff_core.endpoints import EndpointFileError, load_endpoints
from skiff_core.spec import EndpointSpec, EndpointType

if TYPE_CHECKING:
    from skiff_cli.embedded import Stack

console = Console(highlight=False, soft_wrap=True)


@app.command()
def up(
    endpoints: EndpointsDir = None,
    host: Host = None,
    port: Port = None,
    state_dir: StateDir = None,
) -> None:
    """Run the gateway and the workers of every endpoint in a directory, until Ctrl-C or SIGTERM.

    Workers stop first, with SKIFF_WORKER_STOP_GRACE_S (10 s) to finish the job in hand; Ctrl-C again kills them.
    """
    from skiff_cli.embedded import Stack, resolve_api_key

    settings = load_settings(endpoints_dir=endpoints, host=host, port=port, state_dir=state_dir)
    specs = load_specs_or_exit(settings)

    setup_logging()
    # One line per health probe and proxied request would drown everything else at INFO.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    key = resolve_api_key(settings)
    stack = Stack(settings, list(specs.values()), key.value, project_dir=Path.cwd())
    ready = asyncio.Event()

    async def announce() -> None:
        await ready.wait()
        _print_banner(settings.gateway_url, key.value, key.generated, key.source, specs, settings.worker_stop_grace_s)
        if not stack.controller.leading:
            console.print(
                f"controller: standby; another skiff process on {settings.state_dir} leads "
                f"(pid {stack.lock.holder_pid() or '?'}); this one takes over if it stops."
            )

    async def main() -> None:
        dump_tasks_on_sigusr2()
        announcer = asyncio.create_task(announce())
        watcher = asyncio.create_task(_watch(stack, settings.endpoints_dir))
        try:
            await stack.serve(on_ready=ready)
        finally:
            announcer.cancel()
            watcher.cancel()

    try:
        asyncio.run(main())
    except OSError as exc:
        typer.echo(f"skiff: cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        pass
    console.print("skiff: stopped; all workers exited.")


async def _watch(stack: Stack, directory: Path) -> None:
    from watchfiles import awatch

    async for _changes in awatch(directory, debounce=300, recursive=False):
        try:
            specs = load_endpoints(directory)
        except EndpointFileError as exc:
            console.print(f"skiff: not applying {directory}: {exc}")
            continue
        result = await stack.apply(list(specs.values()))
        for verb in ("added", "changed", "removed"):
            for name in result[verb]:
                console.print(f"skiff: endpoint {name} {verb}")


def _print_banner(
    url: str, key: str, generated: bool, source: str, specs: dict[str, EndpointSpec], grace_s: float
) -> None:
    table = Table(title=None, show_edge=False, box=None, padding=(0, 2))
    table.add_column("endpoint", style="bold")
    table.add_column("type")
    table.add_column("URL")
    for name, spec in specs.items():
        path = f"/lb/{name}/" if spec.type is EndpointType.LOAD_BALANCER else f"/v2/{name}/runsync"
        table.add_row(name, spec.type.value, url + path)
    console.print(f"[bold green]Skiff is up[/] at {url}")
    # The key is printed once, and only when Skiff just made it: a log of `skiff up` must not
    # hold a key the operator already has.
    if generated:
        console.print(f"Admin API key (generated and saved to {source}; shown only now): [bold]{key}[/]")
    else:
        console.print(f"Admin API key: from {source}")
    console.print(table)
    first = next(iter(specs))
    where = "$SKIFF_API_KEY" if source == "SKIFF_API_KEY" else f"$(cat {source})"
    console.print(
        "Try it:\n"
        f'  curl -s -X POST {url}/v2/{first}/runsync -H "Authorization: Bearer {where}" '
        '-H \'Content-Type: application/json\' -d \'{"input": {"hello": "world"}}\''
    )
    console.print(
        f"Press Ctrl-C to stop (workers get {grace_s:g} s to finish the job in hand; Ctrl-C again to skip that)."
    )
