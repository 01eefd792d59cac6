"""Compatibility promise 1: the official runpod client drives Skiff by changing only the base URL."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import runpod

from tests.support.stack import SkiffProcess


@pytest.fixture
def endpoint(echo_stack: SkiffProcess) -> Iterator[runpod.Endpoint]:
    previous = runpod.endpoint_url_base
    runpod.endpoint_url_base = f"{echo_stack.url}/v2"  # the only change a Runpod user makes
    try:
        yield runpod.Endpoint("echo", api_key=echo_stack.key)
    finally:
        runpod.endpoint_url_base = previous


def test_run_status_output(endpoint: runpod.Endpoint) -> None:
    job = endpoint.run({"input": {"question": "life"}})
    assert job.output(timeout=30) == {"question": "life"}
    assert job.status() == "COMPLETED"


def test_run_sync(endpoint: runpod.Endpoint) -> None:
    assert endpoint.run_sync({"input": {"x": 42}}, timeout=30) == {"x": 42}
    # runpod wraps a bare payload in {"input": ...} itself.
    assert endpoint.run_sync({"y": 1}, timeout=30) == {"y": 1}


def test_stream(echo_stack: SkiffProcess) -> None:
    previous = runpod.endpoint_url_base
    runpod.endpoint_url_base = f"{echo_stack.url}/v2"
    try:
        stream = runpod.Endpoint("stream", api_key=echo_stack.key)
        job = stream.run({"input": {"text": "to be or not", "delay": 0.1}})
        assert list(job.stream()) == ["to", "be", "or", "not"]
    finally:
        runpod.endpoint_url_base = previous


def test_cancel(endpoint: runpod.Endpoint) -> None:
    job = endpoint.run({"input": {"sleep": 30}})
    deadline = time.monotonic() + 20
    while job.status() == "IN_QUEUE" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job.cancel() == {"id": job.job_id, "status": "CANCELLED"}
    assert job.status() == "CANCELLED"


def test_health_and_purge_queue(endpoint: runpod.Endpoint) -> None:
    blocker = endpoint.run({"input": {"sleep": 30}})
    while blocker.status() == "IN_QUEUE":
        time.sleep(0.1)
    queued = [endpoint.run({"input": {"n": i}}) for i in range(2)]
    health = endpoint.health()
    assert health["jobs"]["inQueue"] >= 2
    assert health["workers"]["running"] == 1, health
    assert endpoint.purge_queue() == {"removed": 2, "status": "completed"}
    assert [j.status() for j in queued] == ["CANCELLED", "CANCELLED"]
    blocker.cancel()


def test_wrong_key_is_reported_as_unauthorized(echo_stack: SkiffProcess) -> None:
    previous = runpod.endpoint_url_base
    runpod.endpoint_url_base = f"{echo_stack.url}/v2"
    try:
        with pytest.raises(RuntimeError, match="401 Unauthorized"):
            runpod.Endpoint("echo", api_key="not-the-key").run_sync({"input": 1}, timeout=5)
    finally:
        runpod.endpoint_url_base = previous
