"""The controller side of load-balancing endpoints: what it reads and marks on their workers.

`ReportedLoads` sums every live gateway replica's report (see skiff_core.lbload). A drained
worker is stopped only once every live report lists the mark and holds no request on that
worker. A replica adopts the marks before it counts, and never picks a marked worker after, so
such a report proves that replica will send the worker nothing more; a replica that has not
reported since the mark was written cannot prove it and holds the stop back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Protocol

from pydantic import ValidationError

from skiff_core.discovery.base import Discovery
from skiff_core.lbload import (
    DRAIN_NOTE,
    DRAIN_REFRESH_S,
    DRAIN_TTL_S,
    NOTES_PREFIX,
    READ_CACHE_S,
    REPORT_PREFIX,
    EndpointLoad,
    InstanceLoad,
    InstanceReport,
    LoadReport,
    LoadSource,
    parse_marks,
    stored_marks,
)
from skiff_core.store.base import JobStore

log = logging.getLogger("skiff.lb")


class LoadView(Protocol):
    """What the controller reads and marks on load_balancer workers
    (`ReportedLoads`: the sum of every gateway replica's numbers)."""

    async def observe(self, endpoint: str) -> tuple[EndpointLoad, dict[str, InstanceLoad]]: ...

    def drain(self, instance_id: str) -> None: ...

    def is_draining(self, instance_id: str) -> bool: ...

    def can_stop(self, instance_id: str) -> bool:
        """Whether a draining worker can be stopped without cutting a request off."""

    def load_of(self, instance_id: str) -> InstanceLoad | None: ...

    def forget(self, instance_id: str) -> None: ...

    async def publish(self) -> None:
        """Make this pass's drains and forgets visible to other processes (leader only)."""


class LocalBalancer(LoadSource, Protocol):
    """A gateway balancer in this same process (`skiff up`), read and drained directly."""

    def drain(self, instance_id: str) -> None: ...

    def is_draining(self, instance_id: str) -> bool: ...

    def can_stop(self, instance_id: str) -> bool: ...

    def forget(self, instance_id: str) -> None: ...


def _earliest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _latest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


class ReportedLoads:
    """The controller side (a `LoadView`): the sum of every live replica's report.

    Under `skiff up` the controller shares a process with a gateway: `local` is that gateway's
    Balancer, read live instead of through its own report (`replica`), and drained directly.
    """

    def __init__(
        self, store: JobStore, discovery: Discovery, *, local: LocalBalancer | None = None, replica: str | None = None
    ) -> None:
        self.store = store
        self.discovery = discovery
        self.local = local
        self.replica = replica
        self._reports: list[LoadReport] = []
        self._read_at = float("-inf")
        # Drain marks as last read from or written to the store, and this process's changes
        # not written yet. Only the leader writes; every process reads.
        self._marks: set[str] = set()
        self._drained: set[str] = set()
        self._forgotten: set[str] = set()
        self._marks_written_at = float("-inf")
        self._first_seen: dict[str, float] = {}
        self._merged: dict[str, InstanceLoad] = {}

    async def observe(self, endpoint: str) -> tuple[EndpointLoad, dict[str, InstanceLoad]]:
        await self._sync()
        now = time.time()
        merged: dict[str, InstanceLoad] = {}
        waiting, oldest = 0, None
        for report in self._current_reports():
            held = report.held.get(endpoint)
            if held is not None:
                waiting += held.count
                oldest = _earliest(oldest, held.since)
            for instance_id, seen in report.loads.items():
                if seen.endpoint == endpoint:
                    self._add(merged.setdefault(instance_id, InstanceLoad(endpoint)), seen)
        for instance in await self.discovery.healthy(endpoint):
            first = self._first_seen.setdefault(instance.id, now)
            load = merged.setdefault(instance.id, InstanceLoad(endpoint))
            load.ready_at = _earliest(load.ready_at, first)
        for load in merged.values():
            if load.inflight:
                load.idle_since = None
            else:
                load.busy_since = None
                if load.ready_at is not None:
                    load.idle_since = _latest(load.idle_since, load.ready_at)
        self._merged = {i: m for i, m in self._merged.items() if m.endpoint != endpoint} | merged
        summary = EndpointLoad(
            waiting=waiting,
            oldest_wait_s=0.0 if oldest is None else max(0.0, now - oldest),
            inflight=sum(load.inflight for load in merged.values()),
        )
        return summary, merged

    def _current_reports(self) -> list[LoadReport]:
        others = [r for r in self._reports if self.replica is None or r.replica != self.replica]
        if self.local is None:
            return others
        return [*others, LoadReport.of(self.replica or "local", self.local)]

    @staticmethod
    def _add(into: InstanceLoad, seen: InstanceReport) -> None:
        into.inflight += seen.inflight
        into.served += seen.served
        into.ready_at = _earliest(into.ready_at, seen.ready_at)
        if seen.inflight:
            into.busy_since = _earliest(into.busy_since, seen.busy_since)
        into.idle_since = _latest(into.idle_since, seen.idle_since)

    async def _sync(self) -> None:
        """Read the reports and the marks, once per READ_CACHE_S: one read of every `lb-` note."""
        now = time.time()
        if now - self._read_at < READ_CACHE_S:
            return
        notes = await self.store.notes(NOTES_PREFIX)
        self._marks = set(parse_marks(notes.pop(DRAIN_NOTE, None)))
        self._reports = list(self._parse({k: v for k, v in notes.items() if k.startswith(REPORT_PREFIX)}))
        self._read_at = now

    async def publish(self) -> None:
        """Write this process's drains and forgets (and every DRAIN_REFRESH_S, so that marks lapse
        when no controller leads). The leading controller only. The marks are read again and
        merged, so a write never drops a mark this process did not forget: a controller taking
        over keeps its predecessor's marks, which replicas still honour."""
        now = time.time()
        if not (self._drained or self._forgotten or now - self._marks_written_at >= DRAIN_REFRESH_S):
            return
        marks = (set(await stored_marks(self.store)) | self._drained) - self._forgotten
        await self.store.put_note(DRAIN_NOTE, json.dumps(sorted(marks)), ttl_s=DRAIN_TTL_S)
        self._marks, self._marks_written_at = marks, now
        self._drained.clear()
        self._forgotten.clear()

    @staticmethod
    def _parse(notes: dict[str, str]) -> Iterable[LoadReport]:
        for key, raw in notes.items():
            try:
                yield LoadReport.model_validate_json(raw)
            except ValidationError:
                log.warning("ignoring an unreadable load-balancer report %s", key)

    def drain(self, instance_id: str) -> None:
        if self.local is not None:
            self.local.drain(instance_id)  # takes effect before this pass ends: same event loop
        self._forgotten.discard(instance_id)
        if instance_id not in self._marks:
            self._drained.add(instance_id)

    def is_draining(self, instance_id: str) -> bool:
        return instance_id in (self._marks | self._drained) - self._forgotten

    def can_stop(self, instance_id: str) -> bool:
        # The mark must be in the store (written, not just decided) and acknowledged by every
        # live report: a report lists a mark only if its replica adopted it before counting.
        if instance_id not in self._marks or instance_id in self._forgotten:
            return False
        if self.local is not None and not (self.local.is_draining(instance_id) and self.local.can_stop(instance_id)):
            return False
        for report in self._reports:
            if self.replica is not None and report.replica == self.replica:
                continue
            seen = report.loads.get(instance_id)
            if instance_id not in report.draining or (seen is not None and seen.inflight):
                return False
        return True

    def load_of(self, instance_id: str) -> InstanceLoad | None:
        return self._merged.get(instance_id)

    def forget(self, instance_id: str) -> None:
        if self.local is not None:
            self.local.forget(instance_id)
        self._merged.pop(instance_id, None)
        self._first_seen.pop(instance_id, None)
        self._drained.discard(instance_id)
        self._forgotten.add(instance_id)  # also when this process never read the mark: publish drops it
