"""`skiff logs ENDPOINT [-f] [--job ID] [--worker ID]`: the output of an endpoint's workers.

Read through the orchestrator the settings pick (`skiff_core.backends`): the worker log files in
the state dir under `skiff up`, Nomad's allocation logs API (stdout and stderr of each
allocation) in a cluster, with the same NOMAD_* / SKIFF_NOMAD_* settings as `skiff controller`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from skiff_cli.app import app
from skiff_cli.options import StateDir, load_settings
from skiff_core.config import Settings


@app.command()
def logs(
    endpoint: Annotated[str, typer.Argument(help="Endpoint name")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new output")] = False,
    job: Annotated[str | None, typer.Option("--job", help="Only lines that name this job id")] = None,
    worker: Annotated[str | None, typer.Option("--worker", help="Only this worker (an id or its prefix)")] = None,
    state_dir: StateDir = None,
) -> None:
    """Print the output of an endpoint's workers (embedded mode: the state dir's log files;
    cluster: Nomad's allocation logs, stdout and stderr)."""
    settings = load_settings(state_dir=state_dir)
    try:
        asyncio.run(_print(settings, endpoint, follow, job, worker))
    except KeyboardInterrupt:
        pass
    except FileNotFoundError as exc:
        typer.echo(f"skiff: {exc}", err=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # Nomad unreachable, no permission: one line, no traceback
        typer.echo(f"skiff logs: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


async def _print(settings: Settings, endpoint: str, follow: bool, job: str | None, worker: str | None) -> None:
    from skiff_core.backends import LocalHooks, build_orchestrator
    from skiff_core.orchestrator.base import WorkerLogs

    orchestrator = build_orchestrator(settings, lambda _name: "", LocalHooks(Path.cwd()))
    try:
        if not isinstance(orchestrator, WorkerLogs):
            typer.echo(f"skiff logs: the {settings.orchestrator} orchestrator cannot read worker output", err=True)
            raise typer.Exit(2)
        async for line in orchestrator.worker_logs(endpoint, worker=worker, follow=follow):
            if job is not None and job not in line.text:
                continue
            tag = line.worker_id if line.stream == "output" else f"{line.worker_id[:8]} {line.stream}"
            typer.echo(f"[{tag}] {line.text}")
    finally:
        await orchestrator.close()
