"""A controller's parts, put together once: the composition root of `skiff controller` (and the
controller half of `skiff up`).

The queue, job store and payloads come from the caller (`skiff_core.backends` picks them). What
the controller reads of workers comes in as a `WorkerRegistry`: the gateway's own tracker when
both run in one process, else `StoreRegistry`, a mirror of the records the gateways flush.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from skiff.aio import cancel_all
from skiff_controller.lb_loads import LocalBalancer, ReportedLoads
from skiff_controller.loop import Controller, Timing, WorkerRegistry
from skiff_controller.registry import StoreRegistry
from skiff_core.backends import Backends, LocalHooks, build_discovery, build_leader_lock, build_orchestrator
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.discovery.base import Discovery
from skiff_core.exited_workers import keep_exited
from skiff_core.jobs import WorkerRecord
from skiff_core.keys import KeyRing
from skiff_core.orchestrator.base import WorkerExit
from skiff_core.requeue import requeue_worker_jobs

log = logging.getLogger("skiff")

# How often a controller without a gateway beside it re-reads the worker registry (the gateways
# flush theirs about twice a second).
MIRROR_INTERVAL_S = 0.25


class ControllerService:
    def __init__(
        self,
        settings: Settings,
        backends: Backends,
        catalog: EndpointCatalog,
        keys: KeyRing,
        *,
        project_dir: Path,
        registry: WorkerRegistry | None = None,
        on_launch: Callable[[str, str, float, float], None] | None = None,
        on_stopping: Callable[[str, str], None] | None = None,
    ) -> None:
        """`registry`, `on_launch`, `on_stopping`: a gateway in this process (`skiff up`): its
        worker tracker and the hooks that register a launched worker and end a stopping one's
        long polls. Without a registry, the controller mirrors the store's records."""
        self.backends = backends
        self.catalog = catalog
        self.keys = keys
        self.mirror: StoreRegistry | None = None
        if registry is None:
            self.mirror = StoreRegistry(backends.store)
            registry = self.mirror
        self.registry = registry
        self._on_launch = on_launch
        hooks = LocalHooks(project_dir, on_launch=self._launched, on_exit=self.worker_exited, on_stopping=on_stopping)
        self.orchestrator = build_orchestrator(settings, keys.worker_key, hooks)
        self.discovery: Discovery | None = build_discovery(settings, self.orchestrator, catalog.all)
        # Every gateway's load-balancer numbers arrive as reports in the store; a gateway in this
        # process is read live instead of through its own report.
        self.loads: ReportedLoads | None = None
        if self.discovery is not None:
            self.loads = ReportedLoads(backends.store, self.discovery)
        self.lock = build_leader_lock(settings)
        self.controller = Controller(
            catalog,
            backends.queue,
            backends.store,
            registry,
            self.orchestrator,
            self.lock,
            timing=Timing.of(settings),
            balancer=self.loads,
        )
        self._tasks: list[asyncio.Task[None]] = []

    def share_process_with(self, balancer: LocalBalancer, replica: str) -> None:
        """A gateway in this process balances load_balancer requests: read its numbers live (not
        through its report, named `replica`) and drain its workers directly."""
        if self.loads is not None:
            self.loads.local = balancer
            self.loads.replica = replica

    def _launched(self, worker_id: str, endpoint: str, launched_at: float, started_at: float) -> None:
        if self.mirror is not None:
            self.mirror.register(worker_id, endpoint, launched_at, started_at)
        if self._on_launch is not None:
            self._on_launch(worker_id, endpoint, launched_at, started_at)

    async def worker_exited(self, worker_id: str, endpoint: str, exit: WorkerExit | None = None) -> None:
        """A worker process ended (the local orchestrator tells): its jobs go back to the queue
        now, every registry forgets it, and its record is kept a while with how it ended."""
        store, queue = self.backends.store, self.backends.queue
        self.controller.observer.worker_exited(endpoint, worker_id)
        record = self.registry.get(worker_id) or await store.get_worker(worker_id)
        requeued = await requeue_worker_jobs(store, queue, worker_id, self.catalog.get)
        self.registry.forget(worker_id)
        await store.delete_worker(worker_id)
        if exit is not None:
            record = record or WorkerRecord(id=worker_id, endpoint=endpoint)
            try:
                await keep_exited(store, record, exit.code, exit.output)
            except Exception as exc:  # only for status pages: never fail the exit handling
                log.warning("keeping the record of exited worker %s failed: %s", worker_id, exc)
        if requeued:
            log.warning("worker %s of %s died holding %d job(s); re-queued them", worker_id, endpoint, len(requeued))
            self.controller.wake(endpoint)

    async def start(self) -> None:
        """Discovery watching, the registry mirrored (when it is one), the control loops running
        (they wait for the leader lock first)."""
        await self.keys.load(self.backends.store)  # before the orchestrator hands out worker keys
        if self.mirror is not None:  # no gateway in this process ensures the queues
            for spec in self.catalog.all():
                await self.backends.queue.ensure(spec.name, max_receives=spec.max_retries + 1)
        if self.discovery is not None:
            self.discovery.start()
        if self.mirror is not None:
            await self.mirror.mirror()
            self._tasks.append(asyncio.create_task(self._mirror_forever(self.mirror), name="mirror-workers"))
        self._tasks.append(asyncio.create_task(self.controller.run(), name="controller"))

    @property
    def running(self) -> asyncio.Task[None]:
        """The control loop's task: it ends only on an error (or when cancelled)."""
        return self._tasks[-1]

    async def stop_workers(self) -> None:
        """Stop the control loops (so nothing relaunches), then every worker this process runs."""
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        await self.orchestrator.close()

    async def close(self) -> None:
        try:
            await self.stop_workers()
        finally:
            try:
                if self.discovery is not None:
                    await self.discovery.close()
            finally:
                await self.lock.close()

    @staticmethod
    async def _mirror_forever(registry: StoreRegistry) -> None:
        while True:
            await asyncio.sleep(MIRROR_INTERVAL_S)
            try:
                await registry.mirror()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: keep the last view, say so, try again
                log.warning("reading the worker registry failed: %s", exc)
