"""One Skiff process serving everything: gateway, orchestrator and (later) controller.

`skiff up` runs this with the embedded defaults; the same code runs with cluster backends when
configuration says so (skiff.backends picks them).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from skiff.backends import build_queue, build_store
from skiff.config import Settings
from skiff.gateway.app import create_app
from skiff.gateway.catalog import EndpointCatalog
from skiff.gateway.context import GatewayContext
from skiff.gateway.keys import KeyRing, load_or_create_key
from skiff.orchestrator.local import LocalOrchestrator
from skiff.spec import EndpointSpec, EndpointType

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
        self.orchestrator = LocalOrchestrator(
            gateway_url=settings.gateway_url,
            worker_key=self.keys.worker_key,
            state_dir=settings.state_dir,
            project_dir=project_dir,
            ping_interval_s=settings.ping_interval_s,
            on_launch=self.ctx.workers.register,
            on_exit=self._worker_exited,
        )
        self.app = create_app(self.ctx, manage_context=False)

    async def _worker_exited(self, worker_id: str, endpoint: str) -> None:
        released = await self.ctx.jobs.release_worker_jobs(worker_id, self.catalog.get)
        if released:
            log.warning("worker %s of %s died holding %d job(s); re-queued them", worker_id, endpoint, released)

    async def start_workers(self) -> None:
        for spec in self.catalog.all():
            await self.orchestrator.apply(spec)
            if spec.type is EndpointType.QUEUE:
                await self.orchestrator.scale(spec.name, max(spec.scaling.min_workers, 1))

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
        server = uvicorn.Server(config)
        await self.ctx.start()
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if serving.done():
                    await serving  # raises the bind error
                    return
                await asyncio.sleep(0.02)
            await self.start_workers()
            if on_ready is not None:
                on_ready.set()
            await serving
        finally:
            await self.orchestrator.close()
            await self.ctx.stop()
            await self.queue.close()
            await self.store.close()
