"""Rate limits per key, endpoint and route class, with Runpod's defaults.

Two limits per route class (skiff_core.spec.RUNPOD_RATE_LIMITS): requests admitted over a
sliding window (10 s), and requests in flight at once. Both are counted in the job store
(`RateCounters`), so every gateway replica sharing the store enforces the same limit: a client
cannot multiply it by spreading requests over replicas.

An in-flight request holds a slot (a lease in the store) until its response is sent, or the
client hangs up and its handler ends. The gateway renews the leases of the slots it holds; if it
dies, they run out after `SLOT_LEASE_S` and the slots free themselves.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from dataclasses import dataclass

from skiff.aio import cancel_all
from skiff_core.config import Settings
from skiff_core.spec import EndpointSpec, effective_limit
from skiff_core.store.base import RateCounters

log = logging.getLogger("skiff.gateway")

SLOT_LEASE_S = 60.0
RENEW_EVERY_S = SLOT_LEASE_S / 3


@dataclass(frozen=True)
class Slot:
    counter: str
    token: str
    held: bool  # a concurrency slot to release


@dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    message: str


class RateLimiter:
    def __init__(self, settings: Settings, counters: RateCounters) -> None:
        self.settings = settings
        self.counters = counters
        self._held: dict[str, str] = {}  # token -> counter, the slots this replica holds
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return self.settings.rate_limits_enabled

    def limits(self, spec: EndpointSpec, route: str) -> tuple[int | None, int | None]:
        return effective_limit(route, spec.rate_limits, self.settings.rate_limits)

    async def admit(self, identity: str, spec: EndpointSpec, route: str) -> Slot | Refusal | None:
        """None: no limit applies. A Slot: admitted, `release` it when the response is done."""
        requests, concurrent = self.limits(spec, route)
        if requests is None and concurrent is None:
            return None
        counter = f"{identity}|{spec.name}|{route}"
        token = uuid.uuid4().hex
        window = self.settings.rate_limit_window_s
        try:
            wait = await self.counters.admit(
                counter, token, requests=requests, window_s=window, concurrent=concurrent, lease_s=SLOT_LEASE_S
            )
        except Exception as exc:  # the store is down: the request itself will say so, if it needs it
            log.warning("rate limits not checked: the store refused (%s: %s)", type(exc).__name__, exc)
            return None
        if wait is not None:
            rules = []
            if requests is not None:
                rules.append(f"{requests} requests per {window:g} s")
            if concurrent is not None:
                rules.append(f"{concurrent} at once")
            return Refusal(
                max(1, math.ceil(wait)),
                f"rate limit exceeded: {route.replace('_', '-')} allows {' and '.join(rules)} "
                f"per API key on endpoint {spec.name!r}; retry later",
            )
        if concurrent is None:
            return Slot(counter, token, held=False)
        self._held[token] = counter
        return Slot(counter, token, held=True)

    async def release(self, slot: Slot) -> None:
        if not slot.held:
            return
        self._held.pop(slot.token, None)
        try:
            await self.counters.release(slot.counter, slot.token)
        except Exception as exc:  # its lease frees it later
            log.warning("a rate-limit slot was not released (%s); it frees itself within %g s", exc, SLOT_LEASE_S)

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._renew_forever(), name="rate-limit-slots"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            held = [(counter, token) for token, counter in self._held.items()]
            try:
                await self.counters.renew(held, SLOT_LEASE_S)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("renewing rate-limit slots failed (%s); retrying", exc)
