"""One Skiff process serving everything: gateway, orchestrator and controller.

`skiff up` runs this with the embedded defaults; the same code runs with cluster backends when
configuration says so (skiff_core.backends picks them).

Several `skiff up` processes may share one state dir (each on its own port): all of them serve
the gateway API from the shared SQLite file, and exactly one, the holder of
`<state_dir>/controller.lock`, runs the controller and therefore the workers. The others wait on
the lock; when the leader dies, its workers go with it (PR_SET_PDEATHSIG) and the next process to
get the lock starts workers of its own, pointed at its own gateway. Queued jobs wait in the
queue meanwhile; jobs the dead workers held come back when their lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from skiff_controller.service import ControllerService
from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.keys import KeyRing, load_or_create_key
from skiff_core.spec import EndpointSpec
from skiff_gateway.server import GracefulServer
from skiff_gateway.server_logs import quiet_cancelled_requests
from skiff_gateway.service import GatewayService

log = logging.getLogger("skiff")


@dataclass(frozen=True)
class ApiKey:
    value: str
    generated: bool
    source: str  # "SKIFF_API_KEY" or the file it was read from / written to


def resolve_api_key(settings: Settings) -> ApiKey:
    if settings.api_key:
        return ApiKey(settings.api_key, False, "SKIFF_API_KEY")
    key, created = load_or_create_key(settings.state_dir)
    return ApiKey(key, created, str(settings.state_dir / "api-key"))


class Stack:
    """The composition root of `skiff up`: one set of backends, a gateway and a controller that
    share them, the controller reading the gateway's own worker tracker and balancer."""

    def __init__(self, settings: Settings, specs: list[EndpointSpec], api_key: str, project_dir: Path) -> None:
        self.settings = settings
        self.keys = KeyRing(api_key)
        self.catalog = EndpointCatalog(specs)
        self.backends = Backends.build(settings)
        self.gateway = GatewayService(settings, self.backends, self.catalog, self.keys)
        self.ctx = self.gateway.ctx
        tracker = self.ctx.workers
        self.control = ControllerService(
            settings,
            self.backends,
            self.catalog,
            self.keys,
            project_dir=project_dir,
            registry=tracker,
            on_launch=self._launched,
            on_stopping=tracker.release,
        )
        # Embedded discovery reads the local orchestrator's table: the controller builds it.
        assert self.control.discovery is not None, "with an orchestrator there always is a discovery"
        self.gateway.use_discovery(self.control.discovery, owned=False)
        assert self.gateway.balancer is not None and self.gateway.reporter is not None
        self.control.share_process_with(self.gateway.balancer, self.gateway.reporter.replica)
        self.controller = self.control.controller
        self.orchestrator = self.control.orchestrator
        self.lock = self.control.lock
        # Wake on enqueue: a job for an endpoint without workers starts one within milliseconds.
        self.gateway.attach_control(self.controller, self.controller.wake)
        self.gateway.on_request_held = self.controller.wake
        # One /metrics for the process: the gateway's series and the controller's.
        self.ctx.metrics.extra.append(self.controller.observer.metrics.registry)
        # Extra observers of worker launches (the wake-latency benchmark uses one).
        self.launch_hooks: list[Callable[[str, str, float], None]] = []
        self._server: uvicorn.Server | None = None
        self.app = self.gateway.app

    def _launched(self, worker_id: str, endpoint: str, launched_at: float, started_at: float) -> None:
        self.ctx.workers.register(worker_id, endpoint, launched_at, started_at)
        for hook in self.launch_hooks:
            hook(worker_id, endpoint, launched_at)

    def request_stop(self) -> None:
        """Ask `serve` to shut down as Ctrl-C would (for in-process users such as benchmarks)."""
        if self._server is not None:
            self._server.should_exit = True

    async def apply(self, specs: list[EndpointSpec]) -> dict[str, list[str]]:
        """Make the served endpoints match `specs` (added, changed: rolling replacement, removed)."""
        return await self.controller.apply(specs)

    async def serve(self, on_ready: asyncio.Event | None = None) -> None:
        config = uvicorn.Config(
            self.app,
            host=self.settings.host,
            port=self.settings.port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=3,
        )
        quiet_cancelled_requests()
        # The workers stop while the gateway still answers: one finishing its job on SIGTERM
        # posts the result instead of losing it.
        server = self._server = GracefulServer(
            config, before_shutdown=self.control.stop_workers, on_second_signal=self.orchestrator.hurry
        )
        try:
            await self.gateway.start()
            serving = asyncio.create_task(server.serve())
            while not server.started:
                if serving.done():
                    await serving  # raises the bind error
                    return
                await asyncio.sleep(0.02)
            await self.control.start()
            await asyncio.sleep(0.05)  # the first lock attempt is immediate: report who leads
            if on_ready is not None:
                on_ready.set()
            await serving
        finally:
            # Reverse order of starting: controller (and workers), gateway, then the backends.
            try:
                await self.control.close()
            finally:
                try:
                    await self.gateway.close()
                finally:
                    await self.backends.close()
