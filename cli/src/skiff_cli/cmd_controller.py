"""`skiff controller`: the controller alone, for cluster mode (no client API, no worker API).

It waits for the leader lock (a Consul session lock when SKIFF_DISCOVERY=consul, else a file lock
in the state dir), registers every endpoint of `--endpoints` with the orchestrator (one Nomad job
each when SKIFF_ORCHESTRATOR=nomad) and autoscales them from the shared queue (SQS) and the
worker registry that the `skiff gateway` replicas flush to the shared store (Redis). Workers talk
to the gateways, at SKIFF_PUBLIC_URL, with per-endpoint worker keys derived from the worker secret
in the shared store (no client key is involved). Saving an endpoint file applies it, as with
`skiff up`.

This is the same Controller class `skiff up` runs; only the process around it differs: the
registry is mirrored from the store (see skiff_controller.registry), because here no gateway shares memory
with the controller. `--port` serves `GET /healthz` and `GET /v1/status` (with the admin key, SKIFF_API_KEY) for
checks and humans, and `GET /metrics` for Prometheus (behind a key, like every route).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from skiff_cli.app import app
from skiff_cli.diagnostics import dump_tasks_on_sigusr2
from skiff_cli.options import EndpointsDir, StateDir, load_settings, load_specs_or_exit, setup_logging
from skiff_core.config import Settings
from skiff_core.endpoints import EndpointFileError, load_endpoints
from skiff_core.spec import EndpointSpec

if TYPE_CHECKING:
    from skiff_controller.loop import Controller
    from skiff_core.keys import KeyRing

log = logging.getLogger("skiff")


@app.command()
def controller(
    endpoints: EndpointsDir = None,
    state_dir: StateDir = None,
    host: Annotated[str | None, typer.Option(help="Address for --port [default: 127.0.0.1]")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Serve GET /healthz, GET /v1/status and GET /metrics on this port "
            "[default: SKIFF_CONTROLLER_PORT, else none]"
        ),
    ] = None,
) -> None:
    """Run the controller only (cluster mode): leader lock, endpoints into the orchestrator, autoscaling."""
    settings = load_settings(endpoints_dir=endpoints, state_dir=state_dir, host=host)
    specs = list(load_specs_or_exit(settings).values())
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if settings.public_url is None:
        typer.echo(
            "skiff controller: note: SKIFF_PUBLIC_URL is unset; workers will call "
            f"{settings.gateway_url}, which must be a gateway",
            err=True,
        )
    try:
        asyncio.run(_run(settings, specs, settings.api_key, port if port is not None else settings.controller_port))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a backend that cannot even be built: say which, without a traceback
        typer.echo(f"skiff controller: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("skiff controller: stopped.")


async def _run(settings: Settings, specs: list[EndpointSpec], api_key: str | None, port: int | None) -> None:
    # Imported here so `skiff --help` stays fast.
    from skiff_controller.service import ControllerService
    from skiff_core.backends import Backends
    from skiff_core.catalog import EndpointCatalog
    from skiff_core.keys import KeyRing

    dump_tasks_on_sigusr2()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    backends = Backends.build(settings)
    keys = KeyRing(api_key)
    tasks: list[asyncio.Task[Any]] = []
    try:
        service = ControllerService(settings, backends, EndpointCatalog(specs), keys, project_dir=Path.cwd())
        control = service.controller
        try:
            await service.start()
            tasks.append(asyncio.create_task(_watch(control, settings.endpoints_dir), name="watch-endpoints"))
            if port is not None:
                tasks.append(asyncio.create_task(_serve_health(control, keys, settings.host, port), name="healthz"))
            tasks.append(asyncio.create_task(_announce(control, settings), name="announce"))
            waiter = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([waiter, service.running], return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if service.running in done and service.running.exception() is not None:
                raise service.running.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.close()
    finally:
        await backends.close()


async def _announce(control: Controller, settings: Settings) -> None:
    started = time.monotonic()
    while not control.leading:
        await asyncio.sleep(0.05)
    names = ", ".join(control.catalog.names())
    print(
        f"skiff controller: leading after {time.monotonic() - started:.1f}s; endpoints: {names}; "
        f"orchestrator {settings.orchestrator}, discovery {settings.discovery}; workers call {settings.gateway_url}",
        flush=True,
    )


async def _watch(control: Controller, directory: Path) -> None:
    from watchfiles import awatch

    async for _changes in awatch(directory, debounce=300, recursive=False):
        try:
            specs = load_endpoints(directory)
        except EndpointFileError as exc:
            print(f"skiff controller: not applying {directory}: {exc}", flush=True)
            continue
        result = await control.apply(list(specs.values()))
        for verb in ("added", "changed", "removed"):
            for name in result[verb]:
                print(f"skiff controller: endpoint {name} {verb}", flush=True)


async def _serve_health(control: Controller, keys: KeyRing, host: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI, Request
    from prometheus_client import generate_latest
    from starlette.responses import Response

    from skiff_core.keys import presented_key
    from skiff_gateway.http import error_response, json_response
    from skiff_gateway.metrics import CONTENT_TYPE

    health = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @health.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "leader": control.leading, "pid": os.getpid()}

    async def status(request: Request) -> Response:
        # Every API route checks its key: the status names workers and endpoints.
        if not keys.is_admin(presented_key(request.headers.get("authorization"))):
            return error_response(401, "missing or invalid API key: send `Authorization: Bearer <key>`")
        return json_response(await control.status())

    # A plain Starlette route: FastAPI would read the locally imported `Request` annotation as a
    # query parameter (annotations are strings here) and answer 422.
    health.add_route("/v1/status", status, methods=["GET"])

    async def metrics(request: Request) -> Response:
        # Behind the admin key, like /v1/status: the controller holds no client keys.
        if not keys.is_admin(presented_key(request.headers.get("authorization"))):
            return error_response(401, "missing or invalid API key: send `Authorization: Bearer <key>`")
        return Response(generate_latest(control.observer.metrics.registry), media_type=CONTENT_TYPE)

    health.add_route("/metrics", metrics, methods=["GET"])

    class _Quiet(uvicorn.Server):
        # The process's own SIGINT/SIGTERM handlers stop everything; uvicorn must not take them.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = _Quiet(uvicorn.Config(health, host=host, port=port, log_level="warning", access_log=False))
    with contextlib.suppress(asyncio.CancelledError):
        await server.serve()
