"""A gateway's parts, put together once: the composition root of `skiff gateway` (and the
gateway half of `skiff up`).

The queue, job store and payload store come from the caller (`skiff_core.backends` picks them),
so that `skiff up` can hand the same ones to its controller; this object starts and closes what
it builds itself, in reverse order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import FastAPI

from skiff.aio import cancel_all
from skiff_core import tracing
from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.discovery.base import Discovery
from skiff_core.keys import KeyRing
from skiff_gateway.app import create_app
from skiff_gateway.balancer import Balancer
from skiff_gateway.context import ControlPlane, GatewayContext
from skiff_gateway.load_reporter import LoadReporter


class GatewayService:
    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        catalog: EndpointCatalog,
        keys: KeyRing,
        *,
        discovery: Discovery | None = None,
    ) -> None:
        self.backends = backends
        self.catalog = catalog
        tracing.setup("skiff-gateway")  # only when OTEL_* variables ask for traces
        self.ctx = GatewayContext.build(settings, backends.queue, backends.store, catalog, keys, backends.payloads)
        self.balancer: Balancer | None = None
        self.reporter: LoadReporter | None = None
        self._owns_discovery = False
        if discovery is not None:
            self.use_discovery(discovery)
        self.app: FastAPI = create_app(self.ctx, manage_context=False)
        # Called when a request waits for a load_balancer worker (a controller in this process wakes).
        self.on_request_held: Callable[[str], None] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def use_discovery(self, discovery: Discovery, *, owned: bool = True) -> None:
        """Serve load_balancer endpoints: this replica picks their workers and reports its
        numbers, which whichever controller leads scales by. Without discovery they answer 503.
        `owned`: this gateway starts and closes it (else whoever built it does)."""
        self._owns_discovery = owned
        self.ctx.discovery = discovery
        self.balancer = Balancer(discovery, wake=self._request_held)
        self.reporter = LoadReporter(self.balancer, self.backends.store)
        self.ctx.balancer = self.balancer

    def attach_control(self, control: ControlPlane, on_enqueue: Callable[[str], None]) -> None:
        """A controller in this process (`skiff up`): the admin routes reach it, enqueues wake it."""
        self.ctx.control = control
        self.ctx.jobs.on_enqueue = on_enqueue

    def _request_held(self, endpoint: str) -> None:
        if self.on_request_held is not None:
            self.on_request_held(endpoint)
        if self.reporter is not None:
            self.reporter.poke(endpoint)

    async def start(self) -> None:
        """Queues ensured, housekeeping running, the load report started (its first round adopts
        the controller's drain marks before any request is routed)."""
        await self.ctx.start()
        if self.ctx.discovery is not None and self._owns_discovery:
            self.ctx.discovery.start()
        if self.reporter is not None:
            self._tasks.append(asyncio.create_task(self.reporter.run(), name="lb-report"))

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        try:
            await self.ctx.stop()
        finally:
            if self.ctx.discovery is not None and self._owns_discovery:
                await self.ctx.discovery.close()
