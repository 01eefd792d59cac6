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
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from skiff_controller.lb_loads import LoadReporter, ReportedLoads
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
from skiff_core.config import Settings
from skiff_core.keys import KeyRing, load_or_create_key
from skiff_core.leader import LeaderLock
from skiff_core.spec import EndpointSpec
from skiff_gateway.app import create_app
from skiff_gateway.balancer import Balancer
from skiff_gateway.context import GatewayContext
from skiff_gateway.server import GracefulServer
from skiff_gateway.server_logs import quiet_cancelled_requests

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
    def __init__(self, settings: Settings, specs: list[EndpointSpec], api_key: str, project_dir: Path) -> None:
        self.settings = settings
        self.keys = KeyRing(api_key)
        self.catalog = EndpointCatalog(specs)
        self.queue = build_queue(settings)
        self.store = build_store(settings)
        self.ctx = GatewayContext.build(settings, self.queue, self.store, self.catalog, self.keys)
        hooks = LocalHooks(
            project_dir, on_launch=self._launched, on_exit=self._worker_exited, on_stopping=self.ctx.workers.release
        )
        self.orchestrator = build_orchestrator(settings, self.keys.worker_key, hooks)
        discovery = build_discovery(settings, self.orchestrator, self.catalog.all)
        assert discovery is not None  # built with an orchestrator, there always is one
        self.discovery = discovery
        self.balancer = Balancer(self.discovery)
        # Other gateway replicas (and a controller elsewhere, should it lead) see this process's
        # load-balancer traffic through its reports; this controller sees theirs.
        self.reporter = LoadReporter(self.balancer, self.store)
        loads = ReportedLoads(self.store, self.discovery, local=self.balancer, replica=self.reporter.replica)
        self.lock: LeaderLock = build_leader_lock(settings)
        self.controller = Controller(self.ctx, self.orchestrator, self.lock, balancer=loads)
        # Wake on enqueue: a job for an endpoint without workers starts one within milliseconds.
        self.ctx.jobs.on_enqueue = self.controller.wake
        self.balancer.wake = self._request_held
        self.ctx.discovery = self.discovery
        self.ctx.balancer = self.balancer
        self.ctx.control = self.controller
        # Extra observers of worker launches (the wake-latency benchmark uses one).
        self.launch_hooks: list[Callable[[str, str, float], None]] = []
        self._server: uvicorn.Server | None = None
        self._background: list[asyncio.Task[None]] = []
        self.app = create_app(self.ctx, manage_context=False)

    def _request_held(self, endpoint: str) -> None:
        self.controller.wake(endpoint)
        self.reporter.poke(endpoint)

    def _launched(self, worker_id: str, endpoint: str, launched_at: float) -> None:
        self.ctx.workers.register(worker_id, endpoint, launched_at)
        for hook in self.launch_hooks:
            hook(worker_id, endpoint, launched_at)

    async def _worker_exited(self, worker_id: str, endpoint: str) -> None:
        released = await self.ctx.jobs.release_worker_jobs(worker_id, self.catalog.get)
        await self.store.delete_worker(worker_id)
        if released:
            log.warning("worker %s of %s died holding %d job(s); re-queued them", worker_id, endpoint, released)

    async def _stop_workers(self) -> None:
        """Stop the controller (so nothing relaunches), then the workers, while the gateway still
        answers: a worker finishing its job on SIGTERM posts the result instead of losing it."""
        background, self._background = self._background, []
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.orchestrator.close()

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
        server = self._server = GracefulServer(
            config, before_shutdown=self._stop_workers, on_second_signal=self.orchestrator.hurry
        )
        await self.ctx.start()
        # LocalDiscovery probes in a task started here; Consul's watches start on first use.
        starter = getattr(self.discovery, "start", None)
        if callable(starter):
            starter()
        self._background.append(asyncio.create_task(self.reporter.run(), name="lb-report"))
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serving.done():
                    await serving  # raises the bind error
                    return
                await asyncio.sleep(0.02)
            self._background.append(asyncio.create_task(self.controller.run(), name="controller"))
            await asyncio.sleep(0.05)  # the first lock attempt is immediate: report who leads
            if on_ready is not None:
                on_ready.set()
            await serving
        finally:
            await self._stop_workers()
            await self.discovery.close()
            closer = getattr(self.lock, "close", None)  # the Consul lock's HTTP session
            if callable(closer):
                await closer()
            await self.ctx.stop()
            await self.queue.close()
            await self.store.close()
