"""Discovery through Consul's health API: the passing instances of service `skiff-<endpoint>`.

Each endpoint gets a background watch: a blocking query on
`GET /v1/health/service/skiff-<endpoint>?passing=1&index=N&wait=25s`
(https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service and
https://developer.hashicorp.com/consul/api-docs/features/blocking). Consul answers as soon as the
service's index passes N, so an instance whose check turns critical drops out of `healthy()`
within one round. `wait` stays below the client's timeout; an index that goes backwards resets to
0, as the blocking-query page asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
from typing import Any
from urllib.parse import urlparse

import consul.aio

from skiff.aio import wait_event
from skiff_core.discovery.base import Instance
from skiff_core.nomad.render import service_name

log = logging.getLogger(__name__)


def parse_consul_addr(addr: str) -> tuple[str, str, int]:
    """`CONSUL_HTTP_ADDR` accepts `host:port` or `scheme://host:port` (Consul CLI docs)."""
    parsed = urlparse(addr if "//" in addr else f"//{addr}")
    scheme = parsed.scheme or "http"
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if scheme == "https" else 8500)
    return scheme, host, port


# Nomad registers an allocation's service as `_nomad-task-<alloc id>-<task|group>-<service>-<port>`
# (client/serviceregistration/id.go MakeAllocServiceID; older releases put the id elsewhere, and
# newer ones append a tags hash): the allocation id is the one UUID in it.
_ALLOC_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def worker_id_of(service_id: str) -> str:
    """The worker id (Nomad allocation id, RUNPOD_POD_ID) behind a Consul service ID, so that the
    balancer's per-worker counts and the orchestrator's workers share one key."""
    match = _ALLOC_ID.search(service_id)
    return match.group(0) if match else service_id


def instances_from_health(endpoint: str, entries: list[dict[str, Any]]) -> list[Instance]:
    """`[{"Node": {...}, "Service": {...}, "Checks": [...]}]`; an empty `Service.Address` means the
    node's address (Consul health API docs). Instance ids are worker ids (see worker_id_of)."""
    out = []
    for entry in entries:
        service = entry.get("Service") or {}
        node = entry.get("Node") or {}
        host = service.get("Address") or node.get("Address")
        port = service.get("Port")
        if not host or not port:
            continue
        out.append(
            Instance(
                id=worker_id_of(str(service.get("ID") or f"{host}:{port}")),
                endpoint=endpoint,
                host=host,
                port=int(port),
            )
        )
    return out


class _Watch:
    def __init__(self) -> None:
        self.instances: list[Instance] = []
        self.index = 0
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class ConsulDiscovery:
    def __init__(
        self,
        addr: str = "http://127.0.0.1:8500",
        *,
        token: str | None = None,
        wait: str = "25s",
        retry_s: float = 1.0,
        first_answer_timeout_s: float = 5.0,
    ) -> None:
        scheme, host, port = parse_consul_addr(addr)
        self._consul = consul.aio.Consul(host=host, port=port, scheme=scheme, token=token, verify=scheme == "https")
        self._wait = wait
        self._retry_s = retry_s
        self._first_timeout = first_answer_timeout_s
        self._watches: dict[str, _Watch] = {}

    def _watch(self, endpoint: str) -> _Watch:
        watch = self._watches.get(endpoint)
        if watch is None:
            watch = _Watch()
            self._watches[endpoint] = watch
            watch.task = asyncio.create_task(self._run(endpoint, watch), name=f"consul-watch-{endpoint}")
        return watch

    async def _run(self, endpoint: str, watch: _Watch) -> None:
        name = service_name(endpoint)
        while True:
            try:
                index, entries = await self._consul.health.service(
                    name, passing=True, index=watch.index or None, wait=self._wait
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the last known set and try again
                log.warning("consul watch of %s failed: %s", name, exc)
                await asyncio.sleep(self._retry_s)
                continue
            new_index = int(index or 0)
            # The blocking-query page: an index that goes backwards means start over.
            watch.index = new_index if new_index >= watch.index else 0
            instances = instances_from_health(endpoint, entries or [])
            if instances != watch.instances or not watch.ready.is_set():
                watch.instances = instances
                watch.changed.set()
                watch.changed = asyncio.Event()
            watch.ready.set()

    async def healthy(self, endpoint: str) -> list[Instance]:
        watch = self._watch(endpoint)
        if not watch.ready.is_set():
            await wait_event(watch.ready, self._first_timeout)
        return list(watch.instances)

    async def wait_change(self, endpoint: str, timeout: float) -> None:
        watch = self._watch(endpoint)
        await wait_event(watch.changed, timeout)

    def start(self) -> None:
        """Nothing to start: each endpoint's watch begins on its first `healthy` call."""

    async def close(self) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._watches.clear()
        closing = self._consul.http.close()
        if inspect.isawaitable(closing):
            await closing
