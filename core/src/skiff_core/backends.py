"""The one place that turns configuration into implementations of the seams.

Nothing else in Skiff looks at which mode it runs in: the gateway and the controller receive a
JobQueue, a JobStore, a PayloadStore, an Orchestrator, a Discovery and a LeaderLock and use them
through their protocols.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from skiff_core.config import Settings
from skiff_core.payloads.base import PayloadStore
from skiff_core.queue.base import JobQueue
from skiff_core.store.base import JobStore


@dataclass
class Backends:
    """The shared state of a process: the queue, the job store and the payload store."""

    queue: JobQueue
    store: JobStore
    payloads: PayloadStore

    @classmethod
    def build(cls, settings: Settings) -> Backends:
        return cls(build_queue(settings), build_store(settings), build_payloads(settings))

    async def close(self) -> None:
        """Closed in the reverse order of building; each one whatever the others did."""
        try:
            await self.payloads.close()
        finally:
            try:
                await self.queue.close()
            finally:
                await self.store.close()


def build_queue(settings: Settings) -> JobQueue:
    if settings.queue == "sqs":
        from skiff_core.queue.sqs import SqsQueue

        return SqsQueue(
            endpoint_url=settings.sqs_endpoint_url,
            region=settings.aws_region,
            prefix=settings.sqs_queue_prefix,
            batch_linger_s=settings.sqs_batch_linger_ms / 1000.0 if settings.sqs_batching else None,
        )
    from skiff_core.queue.sqlite import SqliteQueue

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteQueue(settings.db_path)


def build_store(settings: Settings) -> JobStore:
    if settings.store == "redis":
        from skiff_core.store.redis import RedisStore

        return RedisStore(settings.redis_url, prefix=settings.redis_prefix)
    from skiff_core.store.sqlite import SqliteStore

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.db_path)


def build_payloads(settings: Settings) -> PayloadStore:
    if settings.payloads == "s3":
        from skiff_core.payloads.s3 import S3Payloads

        if not settings.s3_bucket:
            raise ValueError('payloads = "s3" needs a bucket: set SKIFF_S3_BUCKET or s3_bucket in skiff.toml')
        return S3Payloads(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.aws_region,
            prefix=settings.s3_prefix,
        )
    from skiff_core.payloads.files import FilePayloads

    return FilePayloads(settings.state_dir / "payloads")


# --- orchestration, discovery, leader election ------------------------------------------------
# Imported lazily: the embedded mode must not need python-nomad or py-consul at import time.
if TYPE_CHECKING:
    from skiff_core.discovery.base import Discovery
    from skiff_core.leader.base import LeaderLock
    from skiff_core.orchestrator.base import Orchestrator, WorkerExit
    from skiff_core.spec import EndpointSpec


@dataclass(frozen=True)
class LocalHooks:
    """What only the embedded orchestrator needs: where relative commands live and callbacks on
    worker launch, stop and exit (the gateway in the same process registers workers, ends a
    stopping worker's long polls and re-queues a dead one's jobs)."""

    project_dir: Path
    on_launch: Callable[[str, str, float, float], None] | None = None
    on_exit: Callable[[str, str, WorkerExit], Awaitable[None]] | None = None
    on_stopping: Callable[[str, str], None] | None = None


def build_orchestrator(settings: Settings, worker_key: Callable[[str], str], hooks: LocalHooks) -> Orchestrator:
    """`worker_key(endpoint)`: the key a worker of that endpoint presents (KeyRing.worker_key)."""
    if settings.orchestrator == "nomad":
        from skiff_core.nomad.render import RenderOptions
        from skiff_core.orchestrator.nomad import NomadOrchestrator

        # raw_exec tasks (`nomad agent -dev` without Docker) run `command` relative to the project.
        options = RenderOptions(workdir=hooks.project_dir)
        return NomadOrchestrator(settings, render_options=options, worker_key=worker_key, deferred_stops=True)
    from skiff_core.orchestrator.local import LocalOrchestrator

    return LocalOrchestrator(
        gateway_url=settings.gateway_url,
        worker_key=worker_key,
        state_dir=settings.state_dir,
        project_dir=hooks.project_dir,
        ping_interval_s=settings.ping_interval_s,
        stop_grace_s=settings.worker_stop_grace_s,
        on_launch=hooks.on_launch,
        on_exit=hooks.on_exit,
        on_stopping=hooks.on_stopping,
    )


def build_discovery(
    settings: Settings,
    orchestrator: Orchestrator | None,
    endpoints: Callable[[], list[EndpointSpec]],
) -> Discovery | None:
    """Healthy load_balancer workers. None where nothing can find them: the embedded mode's
    discovery reads the local orchestrator's table, which a gateway-only process does not have."""
    if settings.discovery == "consul":
        from skiff_core.discovery.consul import ConsulDiscovery

        return ConsulDiscovery(settings.consul_addr, token=settings.consul_token, ca_cert=settings.consul_cacert)
    if orchestrator is None:
        return None
    from skiff_core.discovery.local import LocalDiscovery

    return LocalDiscovery(orchestrator, endpoints)


def build_leader_lock(settings: Settings) -> LeaderLock:
    """One active controller: a Consul session lock where Consul is the discovery (a cluster),
    else a file lock in the state dir (one machine)."""
    if settings.discovery == "consul":
        from skiff_core.leader.consul import ConsulLeaderLock

        return ConsulLeaderLock(settings.consul_addr, token=settings.consul_token, ca_cert=settings.consul_cacert)
    from skiff_core.leader.file import FileLeaderLock

    return FileLeaderLock(settings.state_dir / "controller.lock")
