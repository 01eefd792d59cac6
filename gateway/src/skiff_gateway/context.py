"""Everything a gateway process holds, built once and shared by the routes."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from skiff_core import tracing
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.discovery.base import Discovery
from skiff_core.jobs import JobRecord
from skiff_core.keys import KeyRing
from skiff_core.outages import log_failure
from skiff_core.payloads.base import PayloadStore
from skiff_core.queue.base import JobQueue
from skiff_core.spec import EndpointSpec
from skiff_core.store.base import JobStore
from skiff_gateway import job_log
from skiff_gateway.auth import KeyResolver
from skiff_gateway.balancer import Balancer
from skiff_gateway.job_history import JobHistory
from skiff_gateway.job_service import JobService
from skiff_gateway.metrics import GatewayMetrics
from skiff_gateway.ratelimit import RateLimiter
from skiff_gateway.webhooks import WebhookSender
from skiff_gateway.workers import WorkerTracker

log = logging.getLogger("skiff.gateway")

# Payload leftovers are rare (only a crash between dropping a record and its payloads leaves
# any) and finding them lists a directory or bucket: a few times an hour is plenty.
PAYLOAD_SWEEP_EVERY_S = 600.0


class ControlPlane(Protocol):
    """What the admin routes (`skiff status`, `skiff apply`) ask of the controller."""

    async def status(self) -> dict[str, Any]: ...

    async def apply(self, specs: list[EndpointSpec]) -> dict[str, list[str]]: ...


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
    resolver: KeyResolver
    limiter: RateLimiter
    discovery: Discovery | None = None
    balancer: Balancer | None = None
    control: ControlPlane | None = None
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    console: JobHistory = field(default_factory=JobHistory)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _lb_client: httpx.AsyncClient | None = None
    _payloads_swept_at: float | None = None

    @property
    def lb_hold_s(self) -> float:
        """How long a load_balancer request waits for a healthy worker before 503."""
        return self.settings.lb_hold_s

    def lb_client(self) -> httpx.AsyncClient:
        """One pooled client for proxying to load_balancer workers (no read timeout: streams may be long)."""
        if self._lb_client is None:
            self._lb_client = httpx.AsyncClient(
                timeout=httpx.Timeout(None, connect=5.0),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=100),
                trust_env=False,
            )
        return self._lb_client

    @classmethod
    def build(
        cls,
        settings: Settings,
        queue: JobQueue,
        store: JobStore,
        catalog: EndpointCatalog,
        keys: KeyRing,
        payloads: PayloadStore,
        discovery: Discovery | None = None,
    ) -> GatewayContext:
        """The queue, store and payloads belong to the caller, who closes them after `stop`."""
        metrics = GatewayMetrics(known=lambda name: catalog.get(name) is not None)
        workers = WorkerTracker(store)
        webhooks = WebhookSender(attempts=settings.webhook_attempts, on_result=metrics.webhook)
        jobs = JobService(settings, queue, store, workers, webhooks, payloads)
        resolver = KeyResolver(keys, store, settings.key_cache_s)
        limiter = RateLimiter(settings, store)
        history = JobHistory()

        def on_submit(job: JobRecord) -> None:
            history.submitted(job)
            job_log.transition(job)

        def on_final(job: JobRecord) -> None:
            metrics.job_final(job)
            history.final(job)
            job_log.transition(job)
            tracing.finished(job)

        jobs.on_submit = on_submit
        jobs.on_final = on_final
        return cls(
            settings,
            queue,
            store,
            catalog,
            keys,
            workers,
            jobs,
            webhooks,
            resolver,
            limiter,
            discovery,
            metrics=metrics,
            console=history,
        )

    async def start(self) -> None:
        await self.keys.load(self.store)  # before any worker key is checked
        self.limiter.start()
        for spec in self.catalog.all():
            await self.queue.ensure(spec.name, max_receives=spec.max_retries + 1)
        self._tasks.append(asyncio.create_task(self._housekeeping()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.limiter.stop()
        await self.webhooks.close()
        if self._lb_client is not None:
            await self._lb_client.aclose()
            self._lb_client = None

    async def _housekeeping(self) -> None:
        """Deadlines (TTL, execution timeout, retention), dead letters and silent workers."""
        while True:
            try:
                await self.housekeeping_pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, exc, "housekeeping pass failed; retrying")
            await asyncio.sleep(0.5)

    async def housekeeping_pass(self) -> None:
        await self.jobs.sweep(self.catalog.get)
        now = time.monotonic()
        if self._payloads_swept_at is None or now - self._payloads_swept_at >= PAYLOAD_SWEEP_EVERY_S:
            self._payloads_swept_at = now
            removed = await self.jobs.payloads.sweep()
            if removed:
                log.info("removed %d expired payload(s) left behind by dropped jobs", removed)
        for spec in self.catalog.all():
            await self.jobs.sweep_dead_letters(spec)
        for worker_id in await self.workers.flush(self.settings.worker_lost_after_s):
            released = await self.jobs.release_worker_jobs(worker_id, self.catalog.get)
            if released:
                log.warning("worker %s went silent; %d job(s) re-queued", worker_id, released)
