"""Everything a gateway process holds, built once and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from skiff.config import Settings
from skiff.discovery.base import Discovery
from skiff.gateway.catalog import EndpointCatalog
from skiff.gateway.keys import KeyRing
from skiff.gateway.lifecycle import JobService
from skiff.gateway.webhooks import WebhookSender
from skiff.gateway.workers import WorkerTracker
from skiff.queue.base import JobQueue
from skiff.store.base import JobStore

log = logging.getLogger("skiff.gateway")


@dataclass
class GatewayContext:
    settings: Settings
    queue: JobQueue
    store: JobStore
    catalog: EndpointCatalog
    keys: KeyRing
    workers: WorkerTracker
    jobs: JobService
    webhooks: WebhookSender
    discovery: Discovery | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        queue: JobQueue,
        store: JobStore,
        catalog: EndpointCatalog,
        keys: KeyRing,
        discovery: Discovery | None = None,
    ) -> GatewayContext:
        workers = WorkerTracker(store)
        webhooks = WebhookSender(attempts=settings.webhook_attempts)
        jobs = JobService(settings, queue, store, workers, webhooks)
        return cls(settings, queue, store, catalog, keys, workers, jobs, webhooks, discovery)

    async def start(self) -> None:
        for spec in self.catalog.all():
            await self.queue.ensure(spec.name, max_receives=spec.max_retries + 1)
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.webhooks.close()

    async def _housekeeping(self) -> None:
        """Deadlines (TTL, execution timeout, retention), dead letters and silent workers."""
        while True:
            try:
                await self.housekeeping_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("housekeeping pass failed; retrying")
            await asyncio.sleep(0.5)

    async def housekeeping_pass(self) -> None:
        await self.jobs.sweep(self.catalog.get)
        for spec in self.catalog.all():
            await self.jobs.sweep_dead_letters(spec)
        for worker_id in await self.workers.flush(self.settings.worker_lost_after_s):
            released = await self.jobs.release_worker_jobs(worker_id, self.catalog.get)
            if released:
                log.warning("worker %s went silent; %d job(s) re-queued", worker_id, released)
