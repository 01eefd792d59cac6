"""Discovery for the embedded mode: the local orchestrator's table of worker ports, health-checked.

A worker of a load_balancer endpoint gets `PORT` and `PORT_HEALTH`; it is healthy while
`GET http://127.0.0.1:$PORT_HEALTH<health_path>` answers 200 (Runpod's load-balancing convention:
https://docs.runpod.io/serverless/load-balancing/build-a-worker, "/ping" by default). One background
task probes every worker of every load_balancer endpoint on a short interval and wakes
`wait_change` waiters as soon as the healthy set changes, so a request held for a starting
worker is sent the moment the worker first answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

from skiff.aio import wait_event
from skiff_core.discovery.base import Instance
from skiff_core.orchestrator.base import Orchestrator, WorkerPhase
from skiff_core.outages import log_failure
from skiff_core.spec import EndpointSpec, EndpointType

log = logging.getLogger("skiff.discovery")


class LocalDiscovery:
    def __init__(
        self,
        orchestrator: Orchestrator,
        endpoints: Callable[[], list[EndpointSpec]],
        *,
        interval_s: float = 0.1,
        probe_timeout_s: float = 1.0,
    ) -> None:
        self._orchestrator = orchestrator
        self._endpoints = endpoints
        self._interval_s = interval_s
        self._client = httpx.AsyncClient(timeout=probe_timeout_s, trust_env=False)
        self._healthy: dict[str, dict[str, Instance]] = {}
        self._changed: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe_forever(), name="local-discovery")

    async def healthy(self, endpoint: str) -> list[Instance]:
        return list(self._healthy.get(endpoint, {}).values())

    async def wait_change(self, endpoint: str, timeout: float) -> None:
        event = self._changed.setdefault(endpoint, asyncio.Event())
        await wait_event(event, timeout)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._client.aclose()

    # ------------------------------------------------------------------ probing
    async def _probe_forever(self) -> None:
        while True:
            try:
                await self.probe_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log_failure(log, exc, "health probing failed; retrying")
            await asyncio.sleep(self._interval_s)

    async def probe_once(self) -> None:
        specs = [s for s in self._endpoints() if s.type is EndpointType.LOAD_BALANCER]
        known = {s.name for s in specs}
        for gone in set(self._healthy) - known:
            self._set(gone, {})
        for spec in specs:
            workers = [
                w
                for w in await self._orchestrator.workers(spec.name)
                if w.phase is WorkerPhase.RUNNING and w.address and w.health_address
            ]
            results = await asyncio.gather(*(self._probe(w.health_address or "", spec.health_path) for w in workers))
            healthy: dict[str, Instance] = {}
            for worker, ok in zip(workers, results, strict=True):
                if ok and worker.address:
                    host, _, port = worker.address.rpartition(":")
                    healthy[worker.id] = Instance(worker.id, spec.name, host, int(port))
            self._set(spec.name, healthy)

    async def _probe(self, address: str, path: str) -> bool:
        try:
            response = await self._client.get(f"http://{address}{path}")
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def _set(self, endpoint: str, healthy: dict[str, Instance]) -> None:
        if set(healthy) == set(self._healthy.get(endpoint, {})):
            return
        self._healthy[endpoint] = healthy
        # Wake every waiter, then arm a fresh event for the next change.
        self._changed.pop(endpoint, asyncio.Event()).set()
        self._changed[endpoint] = asyncio.Event()
