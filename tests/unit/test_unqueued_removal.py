"""A /run whose enqueue fails answers an error and must leave no record behind. When the store
fails the removal too (a full disk fails both), the gateway keeps retrying it, so the record is
gone once the fault is over instead of counted as queued until its TTL."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from skiff_core.backends import Backends
from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.jobs import JobStatus
from skiff_core.keys import KeyRing
from skiff_core.spec import EndpointSpec
from skiff_gateway import job_service
from skiff_gateway.context import GatewayContext

SPEC = EndpointSpec(name="ep", command=["true"])


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[GatewayContext]:
    settings = Settings(state_dir=tmp_path)
    backends = Backends.build(settings)
    context = GatewayContext.build(
        settings, backends.queue, backends.store, EndpointCatalog([SPEC]), KeyRing("sk_test_key"), backends.payloads
    )
    await backends.queue.ensure("ep", max_receives=3)
    yield context
    await backends.close()


async def test_a_failed_enqueue_whose_removal_fails_too_is_removed_once_the_store_is_back(
    ctx: GatewayContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_service, "UNQUEUED_REMOVAL_BACKOFF_S", (0.05, 0.05, 0.05))
    store = ctx.jobs.store
    real_delete = store.delete
    failures = {"delete": 2}

    async def full_disk_enqueue(*_args: Any, **_kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async def delete_while_full(job_id: str) -> None:
        if failures["delete"] > 0:
            failures["delete"] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        await real_delete(job_id)

    monkeypatch.setattr(ctx.jobs.queue, "enqueue", full_disk_enqueue)
    monkeypatch.setattr(store, "delete", delete_while_full)
    with pytest.raises(sqlite3.OperationalError):
        await ctx.jobs.submit(SPEC, {"input": {"n": 1}}, sync=False)
    assert (await store.counts("ep"))[JobStatus.IN_QUEUE] == 1  # the first removal failed
    for _ in range(100):
        if (await store.counts("ep"))[JobStatus.IN_QUEUE] == 0:
            break
        await asyncio.sleep(0.02)
    assert (await store.counts("ep"))[JobStatus.IN_QUEUE] == 0
    assert failures["delete"] == 0
