"""`skiff controller`: the controller alone, for cluster mode (no client API, no worker API).

It waits for the leader lock (a Consul session lock when SKIFF_DISCOVERY=consul, else a file lock
in the state dir), registers every endpoint of `--endpoints` with the orchestrator (one Nomad job
each when SKIFF_ORCHESTRATOR=nomad) and autoscales them from the shared queue (SQS) and the
worker registry that the `skiff gateway` replicas flush to the shared store (Redis). Workers talk
to the gateways, at SKIFF_PUBLIC_URL; every process needs the same SKIFF_API_KEY, from which the
worker keys are derived. Saving an endpoint file applies it, as with `skiff up`.

This is the same Controller class `skiff up` runs; only the process around it differs: the
registry is mirrored from the store (see MirroredTracker), because here no gateway shares memory
with the controller. `--port` serves `GET /healthz` and `GET /v1/status` for checks and humans.
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
from skiff_core.jobs import WorkerRecord
from skiff_core.spec import EndpointSpec
from skiff_gateway.workers import WorkerTracker

if TYPE_CHECKING:
    from skiff_controller.loop import Controller
    from skiff_core.keys import KeyRing

log = logging.getLogger("skiff")

# How often the controller re-reads the worker registry the gateways flush (they flush ~2/s).
MIRROR_INTERVAL_S = 0.25


class MirroredTracker(WorkerTracker):
    """The controller's view of the worker registry: the store's records, refreshed often.

    The Controller reads `get`/`local` and calls `drain`/`forget`; in `skiff up` those act on the
    gateway's own tracker. Here the records come from the store, and a drain is written back to
    it (the Controller does that) and kept locally until the store shows it, so a refresh never
    undoes a drain that is still on its way.
    """

    async def mirror(self) -> None:
        stored = {w.id: w for w in await self._store.list_workers()}
        merged: dict[str, WorkerRecord] = {}
        for worker_id, record in stored.items():
            local = self._workers.get(worker_id)
            if local is not None and local.draining and not record.draining:
                record = record.model_copy(
                    update={"draining": True, "draining_since": local.draining_since, "state": local.state}
                )
            merged[worker_id] = record
        for worker_id, local in self._workers.items():
            if worker_id not in merged and local.draining:
                merged[worker_id] = local  # drained before any gateway flushed it
        self._workers = merged
        self._dirty.clear()  # the gateways own these records; nothing here is flushed


@app.command()
def controller(
    endpoints: EndpointsDir = None,
    state_dir: StateDir = None,
    host: Annotated[str | None, typer.Option(help="Address for --port [default: 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Serve GET /healthz and GET /v1/status on this port [default: none]")
    ] = None,
) -> None:
    """Run the controller only (cluster mode): leader lock, endpoints into the orchestrator, autoscaling."""
    settings = load_settings(endpoints_dir=endpoints, state_dir=state_dir, host=host)
    specs = list(load_specs_or_exit(settings).values())
    setup_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not settings.api_key:
        typer.echo(
            "skiff controller: SKIFF_API_KEY is required: worker keys derive from the gateways' client key",
            err=True,
        )
        raise typer.Exit(2)
    if settings.public_url is None:
        typer.echo(
            "skiff controller: note: SKIFF_PUBLIC_URL is unset; workers will call "
            f"{settings.gateway_url}, which must be a gateway",
            err=True,
        )
    try:
        asyncio.run(_run(settings, specs, settings.api_key, port))
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # a backend that cannot even be built: say which, without a traceback
        typer.echo(f"skiff controller: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo("skiff controller: stopped.")


async def _run(settings: Settings, specs: list[EndpointSpec], api_key: str, port: int | None) -> None:
    # Imported here so `skiff --help` stays fast.
    from skiff_controller.lb_loads import ReportedLoads
    from skiff_controller.loop import Controller
    from skiff_core.backends import (
        LocalHooks,
        build_discovery,
        build_leader_lock,
        build_orchestrator,
        build_queue,
        build_store,
    )
    from skiff_core.catalog import EndpointCatalog
    from skiff_core.keys import KeyRing
    from skiff_gateway.context import GatewayContext

    dump_tasks_on_sigusr2()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    queue = build_queue(settings)
    store = build_store(settings)
    catalog = EndpointCatalog(specs)
    keys = KeyRing(api_key)
    ctx = GatewayContext.build(settings, queue, store, catalog, keys)
    tracker = MirroredTracker(store)
    ctx.workers = tracker

    async def worker_exited(worker_id: str, endpoint: str) -> None:
        # Only the local orchestrator reports exits; its workers' jobs go back to the queue.
        released = await ctx.jobs.release_worker_jobs(worker_id, catalog.get)
        await store.delete_worker(worker_id)
        if released:
            log.warning("worker %s of %s died holding %d job(s); re-queued them", worker_id, endpoint, released)

    hooks = LocalHooks(Path.cwd(), on_launch=tracker.register, on_exit=worker_exited)
    orchestrator = build_orchestrator(settings, keys.worker_key, hooks)
    discovery = build_discovery(settings, orchestrator, catalog.all)
    # The gateways are other processes: their load-balancer numbers arrive as reports in the store.
    balancer = ReportedLoads(store, discovery) if discovery is not None else None
    lock = build_leader_lock(settings)
    control = Controller(ctx, orchestrator, lock, balancer=balancer)
    ctx.control = control
    tasks: list[asyncio.Task[Any]] = []
    try:
        for spec in specs:
            await queue.ensure(spec.name, max_receives=spec.max_retries + 1)
        starter = getattr(discovery, "start", None)  # LocalDiscovery probes from a task
        if callable(starter):
            starter()
        await tracker.mirror()
        tasks.append(asyncio.create_task(_mirror_forever(tracker), name="mirror-workers"))
        tasks.append(asyncio.create_task(control.run(), name="controller"))
        tasks.append(asyncio.create_task(_watch(control, settings.endpoints_dir), name="watch-endpoints"))
        if port is not None:
            tasks.append(asyncio.create_task(_serve_health(control, keys, settings.host, port), name="healthz"))
        tasks.append(asyncio.create_task(_announce(control, settings), name="announce"))
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks[:2]], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        for task in done:
            if task is not waiter and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await orchestrator.close()
        if discovery is not None:
            await discovery.close()
        closer = getattr(lock, "close", None)  # the Consul lock's HTTP session
        if callable(closer):
            await closer()
        await ctx.jobs.payloads.close()
        await queue.close()
        await store.close()


async def _mirror_forever(tracker: MirroredTracker) -> None:
    while True:
        await asyncio.sleep(MIRROR_INTERVAL_S)
        try:
            await tracker.mirror()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is down: keep the last view, say so, try again
            log.warning("reading the worker registry failed: %s", exc)


async def _announce(control: Controller, settings: Settings) -> None:
    started = time.monotonic()
    while not control.leading:
        await asyncio.sleep(0.05)
    names = ", ".join(control.ctx.catalog.names())
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
    from starlette.responses import Response

    from skiff_core.keys import presented_key
    from skiff_gateway.http import error_response, json_response

    health = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @health.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "leader": control.leading, "pid": os.getpid()}

    async def status(request: Request) -> Response:
        # Every API route checks its key: the status names workers and endpoints.
        if not keys.is_client(presented_key(request.headers.get("authorization"))):
            return error_response(401, "missing or invalid API key: send `Authorization: Bearer <key>`")
        return json_response(await control.status())

    # A plain Starlette route: FastAPI would read the locally imported `Request` annotation as a
    # query parameter (annotations are strings here) and answer 422.
    health.add_route("/v1/status", status, methods=["GET"])

    class _Quiet(uvicorn.Server):
        # The process's own SIGINT/SIGTERM handlers stop everything; uvicorn must not take them.
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    server = _Quiet(uvicorn.Config(health, host=host, port=port, log_level="warning", access_log=False))
    with contextlib.suppress(asyncio.CancelledError):
        await server.serve()
