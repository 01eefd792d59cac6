"""`skiff status`: endpoints, workers (state, idle time, cold start) and queue depth of a running stack.

Asks the running gateway (GET /v1/status) with the client key, so it works for any `skiff up`
reachable over HTTP, not only the one on this machine.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from skiff_cli.app import app
from skiff_cli.options import StateDir, load_settings
from skiff_core.config import Settings

# Wide when piped (tests, `| less`): rich would otherwise squeeze the tables into 80 columns.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)

GatewayUrl = Annotated[
    str | None, typer.Option("--url", help="The gateway's URL [default: http://<host>:<port> from the settings]")
]


def admin_call(settings: Settings, url: str | None, method: str, path: str, body: Any = None) -> Any:
    """One call to the gateway's admin API; clear messages instead of tracebacks."""
    base = (url or settings.gateway_url).rstrip("/")
    key = settings.api_key
    key_file = settings.state_dir / "api-key"
    if not key and key_file.exists():
        key = key_file.read_text().strip()
    if not key:
        typer.echo(
            f"skiff: no API key: set SKIFF_API_KEY or point --state-dir at the stack's ({key_file} missing)", err=True
        )
        raise typer.Exit(2)
    try:
        response = httpx.request(
            method, base + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30, trust_env=False
        )
    except httpx.HTTPError as exc:
        typer.echo(f"skiff: cannot reach the gateway at {base}: {exc} (is `skiff up` running?)", err=True)
        raise typer.Exit(1) from None
    try:
        payload = response.json()
    except json.JSONDecodeError:
        payload = {"error": response.text[:200]}
    if not response.is_success:
        message = payload.get("error") if isinstance(payload, dict) else payload
        typer.echo(f"skiff: {base}{path} answered {response.status_code}: {message}", err=True)
        raise typer.Exit(1)
    return payload


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _cold_start(worker: dict[str, Any]) -> str:
    """The cold start and, where the orchestrator saw them, its parts: placement, image pull,
    process start to first job-take."""
    total = _seconds(worker.get("cold_start_s"))
    parts = worker.get("cold_start_parts") or {}
    named = [
        f"{label} {_seconds(parts.get(key))}"
        for key, label in (("placement_s", "place"), ("pull_s", "pull"), ("start_to_take_s", "start→take"))
        if parts.get(key) is not None
    ]
    return f"{total} ({', '.join(named)})" if named and total != "-" else total


def _print_waiting(endpoints: list[dict[str, Any]]) -> None:
    """Why queued jobs wait, and the last crash of a crash-looping endpoint with its output."""
    for endpoint in endpoints:
        queue = endpoint.get("queue") or {}
        waiting = endpoint.get("waiting")
        if queue.get("queued") and waiting:
            console.print(f"{endpoint['name']}: {queue['queued']} job(s) wait: {waiting['message']}", markup=False)
        for gone in (endpoint.get("exited") or [])[:3]:
            console.print(
                f"{endpoint['name']}: worker {gone['id']} exited with code {gone['exit_code']} "
                f"{_seconds(gone.get('exited_s_ago'))} ago (after {_seconds(gone.get('ran_s'))})",
                markup=False,
            )
            for line in gone.get("last_output", [])[-5:]:
                console.print(f"  | {line}", markup=False)
        trouble = endpoint.get("trouble")
        if trouble and trouble.get("output"):
            console.print(f"{endpoint['name']}: last output of {trouble.get('worker_id')}:", markup=False)
            for line in trouble["output"][-10:]:
                console.print(f"  | {line}", markup=False)


@app.command()
def status(
    url: GatewayUrl = None,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw status document")] = False,
) -> None:
    """Show the endpoints, workers and queues of a running stack."""
    settings = load_settings(state_dir=state_dir)
    doc = admin_call(settings, url, "GET", "/v1/status")
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    role = "leading" if doc.get("leader") else "standby (another process leads)"
    console.print(f"controller: {role}, pid {doc.get('pid')}")
    endpoints = Table(show_edge=False, box=None, padding=(0, 2))
    for column in ("endpoint", "type", "workers", "min/max", "queued", "in flight", "oldest wait", "last decision"):
        endpoints.add_column(column)
    workers = Table(show_edge=False, box=None, padding=(0, 2))
    for column in ("worker", "endpoint", "state", "idle", "cold start", "jobs", "version"):
        workers.add_column(column)
    for endpoint in doc.get("endpoints", []):
        queue = endpoint.get("queue") or {}
        scaling = endpoint["scaling"]
        endpoints.add_row(
            endpoint["name"],
            endpoint["type"],
            str(len(endpoint["workers"])),
            f"{scaling['min_workers']}/{scaling['max_workers']}",
            str(queue.get("queued", "-")),
            str(queue.get("in_flight", "-")),
            _seconds(queue.get("oldest_age_s")),
            endpoint.get("decision") or "-",
        )
        for worker in endpoint["workers"]:
            workers.add_row(
                worker["id"],
                endpoint["name"],
                worker["state"],
                _seconds(worker.get("idle_s")),
                _cold_start(worker),
                str(len(worker.get("jobs", []))),
                "current" if worker.get("current", True) else f"old ({worker.get('version')})",
            )
    console.print(endpoints)
    _print_waiting(doc.get("endpoints", []))
    console.print()
    if workers.row_count:
        console.print(workers)
    else:
        console.print("no workers running (endpoints scale from zero when work arrives)")
