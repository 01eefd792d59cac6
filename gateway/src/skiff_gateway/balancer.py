"""Load-balancing endpoints: choose a worker for each request and keep the numbers the autoscaler
scales them by (in-flight requests per worker, requests held for want of a worker).

The gateway route (`skiff_gateway.routes_lb`) asks `Balancer.acquire` for a healthy instance,
proxies the request to it and calls `release` when the response body has been sent; the
controller reads `observe` on every pass (in-process under `skiff up`; otherwise through the
reports `skiff_gateway.load_reporter` publishes). All bookkeeping happens on the event loop between
awaits, so "pick the least-loaded worker and count the request on it" is atomic: a worker that
the controller saw idle and marked draining cannot be picked afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from skiff_core.discovery.base import Discovery, Instance
from skiff_core.lbload import EndpointLoad, InstanceLoad

# How long a worker whose connection just failed is passed over: long enough for discovery to
# notice it is gone, short enough that a transient hiccup does not bench a healthy worker.
FAILED_BENCH_S = 5.0


@dataclass
class _Endpoint:
    waiting: dict[int, float] = field(default_factory=dict)  # request token -> since


class Balancer:
    def __init__(self, discovery: Discovery, *, wake: Callable[[str], None] | None = None) -> None:
        self.discovery = discovery
        self.wake = wake  # the controller's hook: a request arrived that needs a worker
        self._loads: dict[str, InstanceLoad] = {}
        self._endpoints: dict[str, _Endpoint] = {}
        self._draining: set[str] = set()  # drained by a controller in this process
        self._marked: set[str] = set()  # drain marks adopted from the controller's note
        self._benched: dict[str, float] = {}
        self._tokens = 0

    # ---------------------------------------------------------------- request path
    async def acquire(self, endpoint: str, hold_s: float) -> Instance | None:
        """The least-loaded healthy instance, waiting up to `hold_s` for one (None after that)."""
        deadline = time.monotonic() + hold_s
        token: int | None = None
        try:
            while True:
                picked = self._pick(endpoint, await self.discovery.healthy(endpoint))
                if picked is not None:
                    return picked
                if token is None:
                    token = self._hold(endpoint)
                    if self.wake is not None:
                        self.wake(endpoint)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                await self.discovery.wait_change(endpoint, min(remaining, 0.5))
        finally:
            if token is not None:
                self._endpoints[endpoint].waiting.pop(token, None)

    def release(self, instance: Instance) -> None:
        load = self._loads.get(instance.id)
        if load is None:
            return
        load.inflight = max(0, load.inflight - 1)
        if load.inflight == 0:
            load.busy_since = None
            load.idle_since = time.time()

    def failed(self, instance: Instance) -> None:
        """The worker's connection failed: route around it until discovery catches up."""
        self._benched[instance.id] = time.monotonic() + FAILED_BENCH_S

    def _hold(self, endpoint: str) -> int:
        self._tokens += 1
        self._endpoints.setdefault(endpoint, _Endpoint()).waiting[self._tokens] = time.time()
        return self._tokens

    def _pick(self, endpoint: str, healthy: list[Instance]) -> Instance | None:
        now_mono = time.monotonic()
        candidates = [
            i
            for i in healthy
            if i.id not in self._draining and i.id not in self._marked and self._benched.get(i.id, 0.0) <= now_mono
        ]
        if not candidates:
            return None
        now = time.time()
        for instance in candidates:
            self._seen_ready(instance, now)
        best = min(candidates, key=lambda i: (self._loads[i.id].inflight, self._loads[i.id].served))
        load = self._loads[best.id]
        if load.inflight == 0:
            load.busy_since = now
            load.idle_since = None
        load.inflight += 1
        load.served += 1
        return best

    def _seen_ready(self, instance: Instance, now: float) -> InstanceLoad:
        load = self._loads.get(instance.id)
        if load is None:
            load = self._loads[instance.id] = InstanceLoad(instance.endpoint)
        if load.ready_at is None:
            load.ready_at = now
            load.idle_since = now
        return load

    # ---------------------------------------------------------------- controller side
    async def observe(self, endpoint: str) -> tuple[EndpointLoad, dict[str, InstanceLoad]]:
        """The endpoint's held requests and per-worker loads (healthy workers marked ready)."""
        now = time.time()
        for instance in await self.discovery.healthy(endpoint):
            self._seen_ready(instance, now)
        held = self._endpoints.get(endpoint, _Endpoint()).waiting
        loads = {i: load for i, load in self._loads.items() if load.endpoint == endpoint}
        summary = EndpointLoad(
            waiting=len(held),
            oldest_wait_s=max(0.0, now - min(held.values())) if held else 0.0,
            inflight=sum(load.inflight for load in loads.values()),
        )
        return summary, loads

    def drain(self, instance_id: str) -> None:
        self._draining.add(instance_id)

    def adopt_marks(self, instance_ids: Collection[str]) -> None:
        """Adopt the leading controller's drain marks (it may run in another process). Kept apart
        from this process's own drains, which a note written before them must not undo."""
        self._marked = set(instance_ids)

    def draining(self) -> frozenset[str]:
        return frozenset(self._draining | self._marked)

    def can_stop(self, instance_id: str) -> bool:
        # Picking and counting happen on this event loop: a drained worker with nothing in
        # flight cannot be handed a request afterwards.
        return self.inflight(instance_id) == 0

    def held(self) -> dict[str, tuple[int, float]]:
        """Requests held for want of a worker: endpoint -> (how many, since when the oldest)."""
        return {name: (len(e.waiting), min(e.waiting.values())) for name, e in self._endpoints.items() if e.waiting}

    def loads(self) -> dict[str, InstanceLoad]:
        return dict(self._loads)

    def is_draining(self, instance_id: str) -> bool:
        return instance_id in self._draining or instance_id in self._marked

    def load_of(self, instance_id: str) -> InstanceLoad | None:
        return self._loads.get(instance_id)

    def inflight(self, instance_id: str) -> int:
        load = self._loads.get(instance_id)
        return 0 if load is None else load.inflight

    async def prune(self) -> None:
        """Forget workers that left discovery with nothing in flight: without a controller in
        this process to forget them, the table would grow with every worker ever seen."""
        for endpoint in {load.endpoint for load in self._loads.values()}:
            healthy = {i.id for i in await self.discovery.healthy(endpoint)}
            for instance_id, load in list(self._loads.items()):
                if load.endpoint == endpoint and instance_id not in healthy and not load.inflight:
                    self.forget(instance_id)

    def forget(self, instance_id: str) -> None:
        self._loads.pop(instance_id, None)
        self._draining.discard(instance_id)
        self._marked.discard(instance_id)
        self._benched.pop(instance_id, None)
