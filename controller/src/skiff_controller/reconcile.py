"""Declarative endpoints: make the gateway's catalog and the orchestrator match a set of files.

`Reconciler.apply(specs)` compares the desired endpoints with the served ones by name and
`spec_hash`:
- added: queue created, template registered with the orchestrator, served by the gateway, and
  a control loop started (which starts min_workers, or a worker when the first job arrives);
- changed: the new template is registered and served at once; running workers keep the old
  version, and the endpoint's control loop replaces them as a rolling update (a new worker is
  ready, i.e. has taken its first job, before an old one is drained; old ones finish their jobs);
- removed: the gateway stops accepting requests for it, its loop stops and its workers are
  stopped (the orchestrator's SIGTERM lets a job in hand finish within the stop grace period).
  Jobs still queued stay in the queue and run if the endpoint comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from skiff_core.catalog import EndpointCatalog
from skiff_core.orchestrator.base import Orchestrator
from skiff_core.queue.base import JobQueue
from skiff_core.spec import EndpointSpec


class EndpointLoops(Protocol):
    """The controller side that runs one control loop per endpoint."""

    def endpoint_added(self, name: str) -> None: ...

    def endpoint_changed(self, name: str) -> None: ...

    async def endpoint_removed(self, name: str) -> None: ...


@dataclass
class ApplyResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged}

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class Reconciler:
    def __init__(
        self, catalog: EndpointCatalog, queue: JobQueue, orchestrator: Orchestrator, loops: EndpointLoops
    ) -> None:
        self._catalog = catalog
        self._queue = queue
        self._orchestrator = orchestrator
        self._loops = loops
        self._lock = asyncio.Lock()  # one apply at a time (file watcher and `skiff apply` may race)

    async def apply(self, specs: Iterable[EndpointSpec]) -> ApplyResult:
        desired = {spec.name: spec for spec in specs}
        result = ApplyResult()
        async with self._lock:
            current = {spec.name: spec for spec in self._catalog.all()}
            for name in sorted(desired):
                spec = desired[name]
                before = current.get(name)
                if before is not None and before.spec_hash() == spec.spec_hash():
                    result.unchanged.append(name)
                    continue
                await self._queue.ensure(name, max_receives=spec.max_retries + 1)
                await self._orchestrator.apply(spec)
                self._catalog.put(spec)
                if before is None:
                    result.added.append(name)
                    self._loops.endpoint_added(name)
                else:
                    result.changed.append(name)
                    self._loops.endpoint_changed(name)
            for name in sorted(set(current) - set(desired)):
                self._catalog.remove(name)
                await self._loops.endpoint_removed(name)
                await self._orchestrator.remove(name)
                result.removed.append(name)
        return result

    async def register_all(self) -> None:
        """Register the served endpoints' templates with a (fresh) orchestrator."""
        async with self._lock:
            for spec in self._catalog.all():
                await self._orchestrator.apply(spec)
