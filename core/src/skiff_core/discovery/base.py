"""The discovery seam used by the gateway's load-balancing proxy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class Instance:
    id: str  # worker id (local) or Consul service ID (cluster)
    endpoint: str
    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"


@runtime_checkable
class Discovery(Protocol):
    def start(self) -> None:
        """Begin watching in the background (called on the running event loop), where needed."""

    async def healthy(self, endpoint: str) -> list[Instance]:
        """Instances of the endpoint that currently pass their health check (cached, cheap)."""

    async def wait_change(self, endpoint: str, timeout: float) -> None:
        """Return when the healthy set may have changed (a blocking-query round) or after timeout."""

    async def close(self) -> None: ...
