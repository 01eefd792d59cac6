"""`skiff deploy DIR`: make a Nomad cluster run exactly the endpoints declared in DIR.

Every endpoint becomes (or updates) its service job `skiff-<name>`, registered with
`PreserveCounts` so the autoscaler's counts survive, after its worker key (derived from the worker
secret in the job store that the gateways share: SKIFF_STORE, SKIFF_REDIS_URL) is written to the
Nomad Variable `nomad/jobs/skiff-<name>`; jobs Skiff manages (meta
skiff_managed=true) whose endpoint is no longer in DIR are stopped and purged, their variables
deleted. Addresses and tokens are read like
Nomad's and Consul's own CLIs do: NOMAD_ADDR, NOMAD_TOKEN, NOMAD_NAMESPACE, NOMAD_REGION,
CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, each overridable by a flag.

Every endpoint is checked (its image reference with the spec, as `skiff validate` does) and
rendered before anything is sent, so a bad image reference changes
nothing. Exit status: 0 all applied, 1 a file or an endpoint failed, 2 Nomad refused or is unreachable.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from skiff_cli.app import app
from skiff_cli.options import StateDir, load_settings
from skiff_core.config import Settings
from skiff_core.endpoints import EndpointFileError, load_endpoints
from skiff_core.keys import KeyRing
from skiff_core.nomad.client import NomadClient, NomadError, NomadPermissionDenied, NomadUnreachable
from skiff_core.nomad.prepull import prepull_job_id, render_prepull_job
from skiff_core.nomad.render import (
    GROUP_NAME,
    MANAGED_META_KEY,
    ImageReferenceError,
    RenderOptions,
    endpoint_of_job,
    job_id,
    secrets_variable,
)
from skiff_core.orchestrator.nomad import NomadOrchestrator, PlacementFailed, is_live
from skiff_core.spec import EndpointSpec, EndpointType


class DriverChoice(StrEnum):
    AUTO = "auto"
    DOCKER = "docker"
    RAW_EXEC = "raw_exec"


@dataclass
class Outcome:
    endpoint: str
    action: str = ""
    desired: int = 0
    placed: int = 0
    running: int = 0
    healthy: int | None = None  # passing Consul checks (load_balancer endpoints)
    problem: str = ""
    notes: list[str] = field(default_factory=list)


def _fail(code: int, message: str) -> None:
    sys.stderr.write(message + "\n")
    raise typer.Exit(code)


@app.command()
def deploy(
    directory: Annotated[Path, typer.Argument(help="Directory of endpoint files (*.hcl)")],
    nomad_addr: Annotated[
        str | None, typer.Option("--nomad-addr", envvar="NOMAD_ADDR", help="Nomad HTTP API address")
    ] = None,
    nomad_token: Annotated[
        str | None, typer.Option("--nomad-token", envvar="NOMAD_TOKEN", help="Nomad ACL token")
    ] = None,
    namespace: Annotated[str | None, typer.Option("--namespace", envvar="NOMAD_NAMESPACE")] = None,
    region: Annotated[str | None, typer.Option("--region", envvar="NOMAD_REGION")] = None,
    ca_cert: Annotated[
        str | None, typer.Option("--ca-cert", envvar="NOMAD_CACERT", help="CA bundle of a TLS-only Nomad API")
    ] = None,
    consul_addr: Annotated[str | None, typer.Option("--consul-addr", envvar="CONSUL_HTTP_ADDR")] = None,
    consul_token: Annotated[str | None, typer.Option("--consul-token", envvar="CONSUL_HTTP_TOKEN")] = None,
    gateway_url: Annotated[
        str | None, typer.Option("--gateway-url", envvar="SKIFF_PUBLIC_URL", help="URL workers reach the gateway at")
    ] = None,
    state_dir: StateDir = None,
    driver: Annotated[
        DriverChoice, typer.Option("--driver", help="docker, raw_exec (nomad agent -dev) or auto")
    ] = DriverChoice.AUTO,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", help="raw_exec: directory relative commands run from")
    ] = None,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Stop Skiff jobs whose endpoint left DIR")] = True,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to follow placement per endpoint (0: don't)")] = 30.0,
    prepull: Annotated[
        bool,
        typer.Option(
            "--prepull/--no-prepull",
            help="Pull each endpoint's image on its nodes now (a sysbatch job), so a scale-up from zero skips the pull",
        ),
    ] = False,
) -> None:
    """Register every endpoint in DIR as a Nomad job and remove the ones that were deleted."""
    settings = load_settings(
        nomad_addr=nomad_addr,
        nomad_token=nomad_token,
        nomad_namespace=namespace,
        nomad_region=region,
        nomad_cacert=ca_cert,
        consul_addr=consul_addr,
        consul_token=consul_token,
        public_url=gateway_url,
        state_dir=state_dir,
        endpoints_dir=directory,
        orchestrator="nomad",
    )
    try:
        specs = load_endpoints(directory)
    except EndpointFileError as exc:
        _fail(1, f"{exc}\nskiff deploy: nothing was sent to Nomad")
    # Worker keys derive from the worker secret in the job store (SKIFF_STORE, SKIFF_REDIS_URL):
    # the one the gateways check them against.
    keys = KeyRing(None)
    try:
        asyncio.run(_load_worker_secret(settings, keys))
    except Exception as exc:
        _fail(2, f"skiff deploy: cannot read the worker secret from the job store ({settings.store}): {exc}")
    options = RenderOptions(driver=driver.value, workdir=workdir.resolve() if workdir else None)
    orch = NomadOrchestrator(settings, render_options=options, worker_key=keys.worker_key)
    # Render everything first: a bad endpoint stops the deploy before Nomad sees any change.
    bad = []
    for spec in specs.values():
        try:
            orch.render(spec)
        except (ImageReferenceError, ValueError) as exc:
            bad.append(f"endpoint {spec.name!r}: {exc}")
    if bad:
        asyncio.run(orch.close())
        _fail(1, "\n".join(bad) + "\nskiff deploy: nothing was sent to Nomad")
    console = Console()
    try:
        outcomes = asyncio.run(
            _deploy(
                console,
                settings,
                orch,
                specs,
                prune=prune,
                wait_s=wait,
                prepull=prepull and driver is not DriverChoice.RAW_EXEC,
            )
        )
    except NomadPermissionDenied as exc:
        _fail(2, f"skiff deploy: {exc}")
    except NomadUnreachable as exc:
        _fail(2, f"skiff deploy: {exc}")
    console.print(_summary(outcomes))
    failed = [o for o in outcomes if o.problem]
    if failed:
        for outcome in failed:
            sys.stderr.write(f"{outcome.endpoint}: {outcome.problem}\n")
        _fail(1, f"skiff deploy: {len(failed)} of {len(outcomes)} endpoint(s) failed")
    console.print(f"{len(outcomes)} endpoint(s) deployed to {settings.nomad_addr}", highlight=False)


async def _load_worker_secret(settings: Settings, keys: KeyRing) -> None:
    from skiff_core.backends import build_store

    store = build_store(settings)
    try:
        await keys.load(store)
    finally:
        await store.close()


async def _deploy(
    console: Console,
    settings: Settings,
    orch: NomadOrchestrator,
    specs: dict[str, EndpointSpec],
    *,
    prune: bool,
    wait_s: float,
    prepull: bool = False,
) -> list[Outcome]:
    client = orch.client
    outcomes: list[Outcome] = []
    try:
        for spec in specs.values():
            outcome = Outcome(spec.name)
            outcomes.append(outcome)
            previous = await client.get_job(job_id(spec.name))
            if previous is None:
                outcome.action = "created"
            elif (previous.get("Meta") or {}).get("spec_hash") == spec.spec_hash():
                outcome.action = "unchanged"
            else:
                outcome.action = "updated"
            missing = await _missing_secrets(client, spec)
            if missing:
                # Nomad would block the task (no variable) or fail it (ErrMissingKey): say so now.
                hint = f"`skiff secrets set --nomad {spec.name} {missing[0]}`"
                outcome.problem = f"secret {', '.join(missing)} not set in Nomad: {hint}"
                continue
            try:
                await orch.apply(spec)
            except PlacementFailed as exc:
                outcome.problem = str(exc)
            except NomadError as exc:
                if isinstance(exc, NomadPermissionDenied | NomadUnreachable):
                    raise
                outcome.problem = str(exc)
                continue
            if prepull and spec.image is not None and not outcome.problem:
                await client.register(render_prepull_job(spec, settings), preserve_counts=False)
                outcome.notes.append(f"image pre-pull job {prepull_job_id(spec.name)} registered")
                console.print(f"{spec.name}: pulling {spec.image} on its nodes ({prepull_job_id(spec.name)})")
            with console.status(f"[bold]{spec.name}[/]: waiting for allocations"):
                await _follow(console, settings, client, spec, outcome, wait_s)
        if prune:
            for stub in await client.list_jobs(prefix="skiff-"):
                name = endpoint_of_job(str(stub.get("ID", "")))
                managed = (stub.get("Meta") or {}).get(MANAGED_META_KEY) == "true"
                if name and managed and name not in specs and not stub.get("Stop"):
                    await orch.remove(name)
                    outcomes.append(Outcome(name, action="removed"))
                    console.print(f"{name}: removed (no longer in the endpoints directory)", highlight=False)
    finally:
        await orch.close()
    return outcomes


async def _missing_secrets(client: NomadClient, spec: EndpointSpec) -> list[str]:
    if not spec.secrets:
        return []
    variable = await client.get_variable(secrets_variable(spec.name))
    items = (variable or {}).get("Items") or {}
    return [name for name in spec.secrets if name not in items]


async def _follow(
    console: Console, settings: Settings, client: NomadClient, spec: EndpointSpec, outcome: Outcome, wait_s: float
) -> None:
    """Follow the job's allocations with blocking queries until all are running or wait_s passes."""
    job = await client.get_job(job_id(spec.name))
    groups: list[dict[str, Any]] = (job or {}).get("TaskGroups") or []
    group: dict[str, Any] = next((g for g in groups if g.get("Name") == GROUP_NAME), {})
    outcome.desired = int(group.get("Count") or 0)
    deadline = time.monotonic() + wait_s
    index = 0
    while True:
        allocs, index = await client.watch_allocations(
            job_id(spec.name), index=index, wait_s=max(1.0, min(10.0, deadline - time.monotonic()))
        )
        live = [a for a in allocs if is_live(a)]
        outcome.placed = len(live)
        outcome.running = sum(1 for a in live if a.get("ClientStatus") == "running")
        done = outcome.running >= outcome.desired
        if done or time.monotonic() >= deadline:
            break
    if spec.type is EndpointType.LOAD_BALANCER and settings.consul_addr and outcome.desired:
        outcome.healthy = await _passing(settings, spec.name)
    label = "" if outcome.problem else f", {outcome.running} running"
    console.print(
        f"{spec.name}: {outcome.action}, {outcome.placed}/{outcome.desired} placed{label}"
        + ("" if outcome.healthy is None else f", {outcome.healthy} healthy in Consul"),
        highlight=False,
    )


async def _passing(settings: Settings, endpoint: str) -> int | None:
    from skiff_core.discovery.consul import ConsulDiscovery

    discovery = ConsulDiscovery(settings.consul_addr, token=settings.consul_token, first_answer_timeout_s=3)
    try:
        return len(await discovery.healthy(endpoint))
    except Exception:
        return None
    finally:
        await discovery.close()


def _summary(outcomes: list[Outcome]) -> Table:
    table = Table("endpoint", "job", "action", "workers (placed/desired)", "running", "healthy", "status")
    for o in outcomes:
        status = "[red]failed[/]" if o.problem else "[green]ok[/]"
        healthy = "-" if o.healthy is None else str(o.healthy)
        placed = "-" if o.action == "removed" else f"{o.placed}/{o.desired}"
        running = "-" if o.action == "removed" else str(o.running)
        table.add_row(o.endpoint, job_id(o.endpoint), o.action, placed, running, healthy, status)
    return table
