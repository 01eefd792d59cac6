"""The gateway side of the load-balancer reports (see skiff_core.lbload): adopt the leading
controller's drain marks, then publish this replica's numbers for the controller to sum."""

from __future__ import annotations

import asyncio
import logging

from skiff.aio import wait_event
from skiff_core.lbload import REPORT_EVERY_S, REPORT_PREFIX, REPORT_TTL_S, LoadReport, replica_name, stored_marks
from skiff_core.store.base import JobStore
from skiff_gateway.balancer import Balancer

log = logging.getLogger("skiff.lb")


class LoadReporter:
    """The gateway side: adopt the controller's drain marks, then publish this replica's load."""

    def __init__(self, balancer: Balancer, store: JobStore, replica: str | None = None) -> None:
        self.balancer = balancer
        self.store = store
        self.replica = replica or replica_name()
        self._poke = asyncio.Event()

    def poke(self, _endpoint: str) -> None:
        """A request is held for want of a worker: report it now, not on the next round."""
        self._poke.set()

    async def publish_once(self) -> None:
        self.balancer.adopt_marks(await stored_marks(self.store))
        await self.balancer.prune()
        report = LoadReport.of(self.replica, self.balancer)
        await self.store.put_note(REPORT_PREFIX + self.replica, report.model_dump_json(), ttl_s=REPORT_TTL_S)

    async def run(self) -> None:
        failing = False
        while True:
            self._poke.clear()
            try:
                await self.publish_once()
                if failing:
                    log.warning("publishing the load-balancer report works again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: the report lapses, the controller holds stops
                if not failing:  # once per outage, not twice a second
                    log.warning("publishing the load-balancer report failed (retrying): %s", exc)
                failing = True
            await wait_event(self._poke, REPORT_EVERY_S)
