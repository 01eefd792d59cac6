"""Load-balancer reports between gateway replicas and a separate controller, over a real SQLite
job store shared by two replicas' Balancers and the controller's ReportedLoads.

Discovery is a fixed list here (what Consul would answer): the subject is the bookkeeping.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from skiff_controller.lb_loads import ReportedLoads
from skiff_core.discovery.base import Instance
from skiff_core.lbload import READ_CACHE_S
from skiff_core.store.sqlite import SqliteStore
from skiff_gateway.balancer import Balancer
from skiff_gateway.load_reporter import LoadReporter


class FixedDiscovery:
    def __init__(self, *instances: Instance) -> None:
        self.instances = list(instances)

    def start(self) -> None:
        return None

    async def healthy(self, endpoint: str) -> list[Instance]:
        return [i for i in self.instances if i.endpoint == endpoint]

    async def wait_change(self, endpoint: str, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.01))

    async def close(self) -> None:
        return None


W1 = Instance("w1", "web", "127.0.0.1", 1)
W2 = Instance("w2", "web", "127.0.0.1", 2)


def _replica(store: SqliteStore, name: str, discovery: FixedDiscovery) -> tuple[Balancer, LoadReporter]:
    balancer = Balancer(discovery)
    return balancer, LoadReporter(balancer, store, replica=name)


async def test_reports_of_two_replicas_add_up(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "skiff.db")
    discovery = FixedDiscovery(W1, W2)
    (a, report_a), (b, report_b) = _replica(store, "a", discovery), _replica(store, "b", discovery)
    controller = ReportedLoads(store, discovery)
    picked = [await a.acquire("web", 1.0) for _ in range(3)] + [await b.acquire("web", 1.0)]
    assert all(p is not None for p in picked)
    for p in picked[:2]:  # a finishes two of its three
        assert p is not None
        a.release(p)
    await report_a.publish_once()
    await report_b.publish_once()
    summary, loads = await controller.observe("web")
    assert summary.inflight == 2 and summary.waiting == 0
    assert sorted(loads) == ["w1", "w2"]
    assert sum(load.inflight for load in loads.values()) == 2
    assert all(load.served >= 1 and load.ready_at is not None for load in loads.values())
    for load in loads.values():
        assert (load.busy_since is None) == (load.inflight == 0) and (load.idle_since is None) == (load.inflight > 0)
    await store.close()


async def test_a_request_held_on_a_replica_reaches_the_controller(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "skiff.db")
    discovery = FixedDiscovery()  # no worker yet: the request is held
    a, reporter = _replica(store, "a", discovery)
    a.wake = reporter.poke
    controller = ReportedLoads(store, discovery)
    publishing = asyncio.create_task(reporter.run())
    held = asyncio.create_task(a.acquire("web", 5.0))
    summary = None
    for _ in range(100):
        summary, _ = await controller.observe("web")
        if summary.waiting:
            break
        await asyncio.sleep(0.02)
    assert summary is not None and summary.waiting == 1
    discovery.instances.append(W1)  # the controller started a worker and it passed its check
    assert await held == W1
    publishing.cancel()
    await store.close()


async def test_a_drained_worker_is_stoppable_only_once_every_replica_honours_the_mark(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "skiff.db")
    discovery = FixedDiscovery(W1, W2)
    (a, report_a), (b, report_b) = _replica(store, "a", discovery), _replica(store, "b", discovery)
    controller = ReportedLoads(store, discovery)
    on_w1 = await a.acquire("web", 1.0)
    assert on_w1 == W1
    for reporter in (report_a, report_b):
        await reporter.publish_once()
    await controller.observe("web")

    controller.drain("w1")
    assert controller.is_draining("w1") and not controller.can_stop("w1"), "mark not even written yet"
    await controller.publish()  # the mark is written; the reports predate it
    await asyncio.sleep(READ_CACHE_S)
    await controller.observe("web")
    assert not controller.can_stop("w1")
    for reporter in (report_a, report_b):
        await reporter.publish_once()
    await asyncio.sleep(READ_CACHE_S)  # past the read cache: the next observe reads them
    await controller.observe("web")
    assert not controller.can_stop("w1"), "replica a still has a request in flight on w1"
    # Both replicas adopted the mark: neither picks w1 any more.
    assert {await b.acquire("web", 1.0) for _ in range(4)} == {W2}
    a.release(on_w1)
    await report_a.publish_once()
    await asyncio.sleep(READ_CACHE_S)
    await controller.observe("web")
    assert controller.can_stop("w1")

    # A standby only reads: observing writes nothing.
    standby = ReportedLoads(store, discovery)
    await standby.observe("web")
    assert standby.is_draining("w1")
    # A later drain by the leader is kept when the standby, now leading, publishes its own.
    controller.drain("w2")
    await controller.publish()
    standby.drain("w3")
    await standby.publish()
    assert standby.is_draining("w2") and standby.is_draining("w3")
    # Forgetting a stopped worker drops its mark for every replica.
    standby.forget("w1")
    standby.forget("w2")
    await standby.publish()
    await report_b.publish_once()
    assert {await b.acquire("web", 1.0) for _ in range(6)} == {W1, W2}
    await store.close()


async def test_workers_gone_from_discovery_leave_the_report(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "skiff.db")
    discovery = FixedDiscovery(W1, W2)
    a, reporter = _replica(store, "a", discovery)
    controller = ReportedLoads(store, discovery)
    busy = await a.acquire("web", 1.0)
    idle = await a.acquire("web", 1.0)
    assert {busy, idle} == {W1, W2} and idle is not None
    a.release(idle)
    discovery.instances = []  # both stopped passing; one still has a request in flight
    await reporter.publish_once()
    _, loads = await controller.observe("web")
    assert set(loads) == {busy.id}, "an idle worker gone from discovery is still reported"
    await store.close()


async def test_skiff_up_counts_its_own_balancer_live_and_other_replicas_by_report(tmp_path: Path) -> None:
    """`skiff up`: the controller's process also routes; its own report is not counted twice."""
    store = SqliteStore(tmp_path / "skiff.db")
    discovery = FixedDiscovery(W1, W2)
    (local, report_local), (b, report_b) = _replica(store, "up", discovery), _replica(store, "b", discovery)
    controller = ReportedLoads(store, discovery, local=local, replica="up")
    mine = await local.acquire("web", 1.0)
    first, theirs = await b.acquire("web", 1.0), await b.acquire("web", 1.0)
    assert mine is not None and first is not None and theirs is not None
    b.release(first)  # b keeps one request, on the other worker
    assert {mine, theirs} == {W1, W2}
    await report_local.publish_once()
    await report_b.publish_once()
    summary, loads = await controller.observe("web")
    assert summary.inflight == 2 and loads[mine.id].inflight == 1

    # A local drain takes effect at once in this process; b must still acknowledge it.
    controller.drain(mine.id)
    assert local.is_draining(mine.id)
    assert {await local.acquire("web", 1.0) for _ in range(3)} == {theirs}
    await controller.publish()  # marks written
    await report_b.publish_once()  # b adopts them
    # The local publisher adopting the note must not undo the local drain.
    await report_local.publish_once()
    assert local.is_draining(mine.id)
    await asyncio.sleep(READ_CACHE_S)
    await controller.observe("web")
    assert not controller.can_stop(mine.id), "the local request on it is still in flight"
    local.release(mine)
    assert controller.can_stop(mine.id)
    await store.close()
