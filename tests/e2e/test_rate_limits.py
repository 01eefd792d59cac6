"""Rate limits per key, endpoint and route: a burst over a limit gets 429s with Retry-After and
every job admitted under it completes; the limits hold across gateway replicas sharing a store.
Small limits keep the bursts short; the defaults are Runpod's numbers."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from skiff_core.config import Settings
from skiff_core.spec import EndpointSpec
from skiff_gateway.ratelimit import RateLimiter
from tests.support.services import MotoServer, RedisServer
from tests.support.stack import SKIFF, GatewayReplica, SkiffProcess, endpoint_hcl
from tests.support.wait import eventually, wait_final

ECHO = "tests/workers/skiff_async_echo.py"
# No crash is tested here: a worker slow to start on a busy machine must not be taken for a dead one.
PATIENT = {"SKIFF_WORKER_LOST_AFTER_S": "30"}
# Global limits, per key and endpoint: small, so that a burst is a handful of requests.
LIMITS = {
    "run": {"requests": 5},
    "runsync": {"requests": 100, "concurrent": 2},
    "status": {"requests": 500},
    "cancel": {"requests": 2},
}


def test_defaults_are_runpods_numbers() -> None:
    """Requests per 10 s / concurrent, per endpoint and route (Runpod's documented limits)."""
    limiter = RateLimiter(Settings(), counters=None)  # type: ignore[arg-type]
    spec = EndpointSpec(name="e", command=["true"])
    assert Settings().rate_limit_window_s == 10
    routes = ("run", "runsync", "status", "stream", "cancel", "purge_queue", "openai")
    assert {route: limiter.limits(spec, route) for route in routes} == {
        "run": (1000, 200),
        "runsync": (2000, 400),
        "status": (2000, 400),  # status, status-sync, health
        "stream": (2000, 400),
        "cancel": (100, 20),  # cancel, retry
        "purge_queue": (2, None),
        "openai": (2000, 400),
    }


def _hcl_with_limits(name: str) -> str:
    """An endpoint whose file tightens /run further and lifts the cancel limit."""
    base = endpoint_hcl(name, ECHO, scaling={"min_workers": 1, "max_workers": 1})
    block = "  rate_limits {\n    run {\n      requests = 3\n    }\n    cancel {\n      requests = 0\n    }\n  }\n}\n"
    return base.rstrip().removesuffix("}") + block


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[SkiffProcess]:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "a.hcl").write_text(endpoint_hcl("a", ECHO, scaling={"min_workers": 1, "max_workers": 1}))
    (endpoints / "b.hcl").write_text(_hcl_with_limits("b"))
    stack = SkiffProcess(endpoints, tmp_path / "state", {**PATIENT, "SKIFF_RATE_LIMITS": json.dumps(LIMITS)})
    try:  # stopped even when it did not start in time: never left running
        stack.start(timeout=120)
        stack.wait_ready_workers("a")
        yield stack
    finally:
        stack.stop()


def _burst(client: httpx.Client, method: str, path: str, count: int, body: object = None) -> list[httpx.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: client.request(method, path, json=body), range(count)))


def _refused(replies: list[httpx.Response]) -> list[httpx.Response]:
    refused = [r for r in replies if r.status_code == 429]
    for reply in refused:
        assert 1 <= int(reply.headers["Retry-After"]) <= 10, reply.headers
        assert "rate limit exceeded" in reply.json()["error"]
    assert all(r.status_code in (200, 429) for r in replies), [r.text for r in replies]
    return refused


def test_bursts_over_each_limit_get_429_and_admitted_jobs_complete(limited: SkiffProcess) -> None:
    stack = limited
    with stack.client() as client:
        runs = _burst(client, "POST", "/v2/a/run", 9, {"input": {"n": 1}})
        assert len(_refused(runs)) == 9 - 5
        admitted = [r.json()["id"] for r in runs if r.status_code == 200]
        # The endpoint file's own limit (3) beats the global one (5).
        assert len(_refused(_burst(client, "POST", "/v2/b/run", 5, {"input": 2}))) == 5 - 3

        # Concurrency: two /runsync in flight at once; the others are refused, not queued.
        syncs = _burst(client, "POST", "/v2/a/runsync?wait=60000", 5, {"input": {"sleep": 3}})
        assert len(_refused(syncs)) == 3
        assert all(r.json()["status"] == "COMPLETED" for r in syncs if r.status_code == 200)
        # Their slots are free again: the next one passes.
        after = client.post("/v2/a/runsync?wait=60000", json={"input": {"again": True}})
        assert after.status_code == 200 and after.json()["status"] == "COMPLETED"
        # Clients that hang up mid-request free their slots too, once their requests end.
        with stack.client(timeout=1.5) as impatient:
            for n in range(2):
                with pytest.raises(httpx.TimeoutException):
                    impatient.post("/v2/a/runsync?wait=60000", json={"input": {"sleep": 3, "n": n}})
        eventually(
            lambda: client.post("/v2/a/runsync?wait=60000", json={"input": {"late": 1}}).status_code == 200,
            timeout=60,
            interval=0.5,
            what="a runsync slot after two clients hung up",
        )

        cancels = [client.post(f"/v2/a/cancel/{job_id}") for job_id in admitted[:4]]
        assert [r.status_code for r in cancels].count(429) == 2 and len(_refused(cancels)) == 2
        # purge-queue keeps Runpod's 2 per 10 s.
        purges = [client.post("/v2/b/purge-queue") for _ in range(3)]
        assert [r.status_code for r in purges] == [200, 200, 429] and _refused(purges)

        for job_id in admitted:  # every admitted job ends (completed, or cancelled above)
            assert wait_final(client, "a", job_id, 60)["status"] in ("COMPLETED", "CANCELLED")
        assert wait_final(client, "a", admitted[-1], 60)["status"] == "COMPLETED"  # not cancelled

    # Per key: another key has a budget of its own on the same endpoint and route.
    env = {**os.environ, "SKIFF_API_KEY": stack.key}
    created = subprocess.run(
        [SKIFF, "keys", "create", "--url", stack.url], env=env, capture_output=True, text=True, timeout=60
    )
    assert created.returncode == 0, created.stderr
    with stack.client(created.stdout.strip()) as other:
        replies = _burst(other, "POST", "/v2/a/run", 6, {"input": {"k": 2}})
        assert len(_refused(replies)) == 1
        for reply in replies:
            if reply.status_code == 200:
                assert wait_final(other, "a", reply.json()["id"], 60)["status"] == "COMPLETED"
    # Refusals are cheap 429s, never errors in the log.
    assert "Traceback" not in stack.output()


@pytest.fixture
def replicas(moto: MotoServer, redis: RedisServer, tmp_path: Path) -> Iterator[tuple[GatewayReplica, SkiffProcess]]:
    run = uuid.uuid4().hex[:8]
    env = {
        **moto.env,
        "SKIFF_QUEUE": "sqs",
        "SKIFF_STORE": "redis",
        "SKIFF_REDIS_URL": redis.url(),
        "SKIFF_REDIS_PREFIX": f"l{run}:",
        "SKIFF_SQS_QUEUE_PREFIX": f"l{run}-",
        **PATIENT,
        "SKIFF_RATE_LIMITS": json.dumps({"run": {"requests": 6}}),
    }
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(endpoint_hcl("echo", ECHO, scaling={"min_workers": 1, "max_workers": 1}))
    b = SkiffProcess(endpoints, tmp_path / "state-b", env)
    a = GatewayReplica(endpoints, tmp_path / "state-a", env)
    try:
        b.start(timeout=120)
        try:
            a.start(timeout=120)
            b.wait_ready_workers("echo")
            yield a, b
        finally:
            if a.proc is not None:
                a.stop()
    finally:
        b.stop()


def test_two_gateway_replicas_share_the_limit(replicas: tuple[GatewayReplica, SkiffProcess]) -> None:
    a, b = replicas
    with a.client() as on_a, b.client() as on_b:
        first = _burst(on_a, "POST", "/v2/echo/run", 4, {"input": {"via": "a"}})
        second = _burst(on_b, "POST", "/v2/echo/run", 4, {"input": {"via": "b"}})
        assert _refused(first) == []
        assert len(_refused(second)) == 2  # 6 in all, whichever replica a request reached
        assert len(_refused([on_a.post("/v2/echo/run", json={"input": 1})])) == 1
        for reply in first + second:
            if reply.status_code == 200:
                assert wait_final(on_b, "echo", reply.json()["id"], 60)["status"] == "COMPLETED"
