"""skiff.Endpoint and skiff.AsyncEndpoint against the real gateway."""

from __future__ import annotations

import asyncio
import time

import pytest

import skiff
from skiff.client import SkiffAuthError, SkiffNotFoundError
from tests.support.stack import SkiffProcess


def test_sync_client_drives_every_route(echo_stack: SkiffProcess) -> None:
    with skiff.Endpoint("echo", base_url=echo_stack.url, api_key=echo_stack.key) as ep:
        assert ep.run_sync({"a": 1}, timeout=30) == {"a": 1}
        job = ep.run({"b": 2})
        assert job.output(timeout=30) == {"b": 2}
        assert ep.status(job.id)["status"] == "COMPLETED"

        slow = ep.run({"sleep": 30})
        while slow.status() == "IN_QUEUE":
            time.sleep(0.05)
        assert slow.cancel()["status"] == "CANCELLED"
        assert ep.retry(slow.id)["status"] == "IN_QUEUE"
        ep.cancel(slow.id)
        health = ep.health()
        assert health["jobs"]["completed"] >= 2
        assert ep.purge_queue()["status"] == "completed"

    with skiff.Endpoint("stream", base_url=echo_stack.url, api_key=echo_stack.key) as stream:
        assert list(stream.run({"text": "a b c"}).stream()) == ["a", "b", "c"]


def test_sync_client_errors_carry_the_servers_message(echo_stack: SkiffProcess) -> None:
    with skiff.Endpoint("echo", base_url=echo_stack.url, api_key="wrong") as ep, pytest.raises(SkiffAuthError) as err:
        ep.health()
    assert err.value.status_code == 401 and "invalid API key" in err.value.message
    with (
        skiff.Endpoint("nope", base_url=echo_stack.url, api_key=echo_stack.key) as ep,
        pytest.raises(SkiffNotFoundError, match="not found"),
    ):
        ep.run({"x": 1})


def test_async_client(echo_stack: SkiffProcess) -> None:
    async def main() -> None:
        async with skiff.AsyncEndpoint("echo", base_url=echo_stack.url, api_key=echo_stack.key) as ep:
            results = await asyncio.gather(*(ep.run_sync({"i": i}, timeout=30) for i in range(5)))
            assert results == [{"i": i} for i in range(5)]
            job = await ep.run({"later": True})
            assert await job.output(timeout=30) == {"later": True}
        async with skiff.AsyncEndpoint("stream", base_url=echo_stack.url, api_key=echo_stack.key) as stream:
            job = await stream.run({"text": "x y"})
            assert [chunk async for chunk in job.stream()] == ["x", "y"]

    asyncio.run(main())
