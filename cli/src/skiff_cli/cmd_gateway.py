"""`skiff gateway`: one gateway replica and nothing else (no workers, no controller).

Run several behind a load balancer: they share the queue, the job store and the payload store named
by the settings (SQS, Redis, S3 in a cluster), so any replica accepts a job, any replica hands it to
a worker, and a `/runsync` waiting on one replica wakes when another stores the result. Every
replica needs the same admin key (SKIFF_API_KEY); client keys made with `skiff keys` and the worker
keys' secret are in the shared store. `GET /healthz` is the liveness check for Nomad or Consul.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import typer
import uvicorn

from skiff_cli.app import app
from skiff_cli.diagnostics import dump_tasks_on_sigusr2
from skiff_cli.options import EndpointsDir, Host, Port, StateDir, load_settings, load_specs_or_exit, setup_logging
from skiff_core.config import Settings
from skiff_core.spec import EndpointSpec

log = logging.getLogger("skiff")


@app.command()
def gateway(
    endpoints: EndpointsDir = None,
    host: Host = None,
    port: Port = None,
    state_dir: StateDir = None,
) -> None:
    """Run one gateway replica (client and worker APIs only) until Ctrl-C or SIGTERM."""
    settings = load_settings(endpoints_dir=endpoints, host=host, port=port, state_dir=state_dir)
    specs = list(load_specs_or_exit(settings).values())
    setup_logging()
    if settings.queue == "sqlite" or settings.store == "sqlite":
        typer.echo(
            "skiff gateway: note: embedded queue/store: replicas must share one state dir on one machine; "
            "use SKIFF_QUEUE=sqs and SKIFF_STORE=redis for replicas on several machines",
            err=True,
        )
    try:
        listener = _bind(settings.host, settings.port)
    except OSError as exc:
        typer.echo(f"skiff: cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    with listener, asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(settings, specs, listener))
    typer.echo("skiff gateway: stopped.")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where uvicorn[standard] installed it (not on Windows): its transports and timers are
    C, and the gateway spends a good part of each request in the event loop. None: asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _bind(host: str, port: int) -> socket.socket:
    """Bound here rather than by uvicorn, whose bind failure is a SystemExit from inside its task."""
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # sockets whose proto says TCP, and accepted sockets inherit the listener's. With Nagle on,
    # a response whose body follows its headers in a second write waits for the client's
    # delayed ACK (40 ms on Linux).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _client_key(settings: Settings) -> str:
    if settings.api_key:
        return settings.api_key
    from skiff_core.keys import load_or_create_key

    key, created = load_or_create_key(settings.state_dir)
    where = settings.state_dir / "api-key"
    origin = "generated into" if created else "read from"
    typer.echo(f"skiff gateway: API key {origin} {where}; give every replica the same key (SKIFF_API_KEY)", err=True)
    return key


async def _serve(settings: Settings, specs: list[EndpointSpec], listener: socket.socket) -> None:
    # Imported here so `skiff --help` stays fast.
    from skiff_core.backends import Backends, build_discovery
    from skiff_core.catalog import EndpointCatalog
    from skiff_core.keys import KeyRing
    from skiff_gateway.server import GracefulServer
    from skiff_gateway.server_logs import quiet_cancelled_requests
    from skiff_gateway.service import GatewayService

    dump_tasks_on_sigusr2()
    backends = Backends.build(settings)
    try:
        catalog = EndpointCatalog(specs)
        # Without an orchestrator here, only a cluster's discovery (Consul) can find load_balancer
        # workers; embedded replicas answer /lb/ with 503 and leave it to `skiff up`.
        discovery = build_discovery(settings, None, catalog.all)
        service = GatewayService(settings, backends, catalog, KeyRing(_client_key(settings)), discovery=discovery)
        try:
            await service.start()
            config = uvicorn.Config(
                service.app,
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=3,
            )
            quiet_cancelled_requests()
            server = GracefulServer(config)
            serving = asyncio.create_task(server.serve(sockets=[listener]))
            while not server.started:
                if serving.done():
                    await serving  # the startup failure
                    return
                await asyncio.sleep(0.02)
            typer.echo(f"Skiff gateway is up at http://{settings.host}:{settings.port}")
            typer.echo(f"endpoints: {', '.join(s.name for s in specs)}; workers reach it at {settings.gateway_url}")
            await serving
        finally:
            await service.close()
    finally:
        await backends.close()
