"""`skiff controller`'s view of workers (no gateway in its process): the store's records, its own
drains kept until the store shows them, and a worker that exits forgotten everywhere.

The bug this guards against: the controller once ran on a gateway context whose job service
kept a first worker tracker while the controller read a second, mirrored one, so an exited
worker was forgotten in the tracker nobody read and a drained one stayed in the mirror for good.
"""

from __future__ import annotations

from pathlib import Path

from skiff_controller.registry import UNCONFIRMED_DRAIN_S, StoreRegistry
from skiff_controller.service import ControllerService
from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.exited_workers import recent_exits
from skiff_core.jobs import JobRecord, JobStatus, WorkerRecord
from skiff_core.keys import KeyRing
from skiff_core.orchestrator.base import WorkerExit
from skiff_core.spec import EndpointSpec
from tests.support.fakes import FakeClock


async def test_a_drained_worker_that_exits_leaves_no_ghost(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path)
    backends = Backends.build(settings)
    spec = EndpointSpec(name="ep", command=["true"])
    service = ControllerService(
        settings, backends, EndpointCatalog([spec]), KeyRing("sk_test", "secret"), project_dir=tmp_path
    )
    try:
        await backends.queue.ensure("ep", max_receives=3)
        await backends.queue.enqueue("ep", "j1")
        [delivery] = await backends.queue.receive("ep", max_messages=1, lease=600, wait=0)
        await backends.store.create(
            JobRecord(id="j1", endpoint="ep", status=JobStatus.IN_PROGRESS, worker_id="w1", receipt=delivery.receipt)
        )
        await backends.store.upsert_worker(WorkerRecord(id="w1", endpoint="ep", jobs_in_progress=["j1"]))
        registry = service.registry
        assert isinstance(registry, StoreRegistry)
        await registry.mirror()
        service.controller.workers.drain("w1", "ep")  # what a scale-down does first

        await service.worker_exited("w1", "ep")  # the process died while draining
        await registry.mirror()

        assert registry.get("w1") is None and registry.local() == []
        assert await backends.store.get_worker("w1") is None
        job = await backends.store.get("j1")
        assert job is not None and job.status is JobStatus.IN_QUEUE  # its job went back at once
        assert (await backends.queue.stats("ep")).queued == 1
    finally:
        await service.close()
        await backends.close()


async def test_a_drain_waits_for_the_store_then_follows_it(tmp_path: Path) -> None:
    clock = FakeClock()
    settings = Settings(state_dir=tmp_path)
    backends = Backends.build(settings)
    registry = StoreRegistry(backends.store, clock=clock)
    try:
        await backends.store.upsert_worker(WorkerRecord(id="w1", endpoint="ep"))
        await registry.mirror()
        registry.drain("w1", "ep")
        await registry.mirror()  # the gateways have not flushed the drain yet: it is kept
        record = registry.get("w1")
        assert record is not None and record.draining
        # The store shows it (a gateway flushed it), then the worker is gone from the store.
        await backends.store.upsert_worker(record)
        await registry.mirror()
        await backends.store.delete_worker("w1")
        await registry.mirror()
        assert registry.get("w1") is None
    finally:
        await backends.close()


async def test_a_drain_no_gateway_ever_confirms_lapses(tmp_path: Path) -> None:
    clock = FakeClock()
    backends = Backends.build(Settings(state_dir=tmp_path))
    registry = StoreRegistry(backends.store, clock=clock)
    try:
        registry.register("w1", "ep", clock())
        registry.drain("w1", "ep")
        await registry.mirror()
        assert registry.get("w1") is not None  # drained before any gateway flushed it
        clock.advance(UNCONFIRMED_DRAIN_S + 1)
        await registry.mirror()
        assert registry.get("w1") is None
    finally:
        await backends.close()


async def test_a_crashed_workers_record_is_kept_with_its_exit_code_and_last_lines(tmp_path: Path) -> None:
    """Gone from the live registry (nothing counts it), listed a while as exited."""
    settings = Settings(state_dir=tmp_path)
    backends = Backends.build(settings)
    spec = EndpointSpec(name="ep", command=["true"])
    service = ControllerService(
        settings, backends, EndpointCatalog([spec]), KeyRing("sk_test", "secret"), project_dir=tmp_path
    )
    try:
        await backends.store.upsert_worker(WorkerRecord(id="w1", endpoint="ep", launched_at=1000.0))
        await service.worker_exited("w1", "ep", WorkerExit(3, ("loading", "FileNotFoundError: /models/x")))
        assert await backends.store.get_worker("w1") is None
        [kept] = await recent_exits(backends.store, "ep")
        assert (kept.id, kept.exit_code, kept.launched_at) == ("w1", 3, 1000.0)
        assert kept.last_output == ["loading", "FileNotFoundError: /models/x"] and kept.exited_at is not None
        assert await recent_exits(backends.store, "other") == []
        [entry] = (await service.controller.status())["endpoints"]
        assert entry["exited"][0]["exit_code"] == 3 and entry["exited"][0]["last_output"][-1].startswith("FileNot")
    finally:
        await service.close()
        await backends.close()
