"""load_balancer endpoints end to end, with two kinds of worker server (FastAPI and http.server):
start on demand, health-gated routing, headers and bodies kept, streaming, a worker killed
mid-stream, scale back to zero."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.stack import SkiffProcess, endpoint_hcl

SERVERS = {"fastapi": "tests/workers/lb_fastapi.py", "plain": "tests/workers/lb_plain.py"}


def _lb_hcl(name: str, worker: str, scaling: dict[str, Any], env: dict[str, str] | None = None) -> str:
    return endpoint_hcl(name, worker, type="load_balancer", scaling=scaling, **({"env": env} if env else {}))


@pytest.fixture(scope="module", params=sorted(SERVERS))
def lb_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkiffProcess]:
    root = tmp_path_factory.mktemp(f"lb-{request.param}")
    endpoints = root / "endpoints"
    endpoints.mkdir()
    worker = SERVERS[request.param]
    # "solo": scales from zero; its worker's health check fails for its first second, so a
    # request routed before the check passed would see "healthy": false.
    (endpoints / "solo.hcl").write_text(
        _lb_hcl(
            "solo",
            worker,
            {"min_workers": 0, "max_workers": 1, "idle_timeout": "2s", "scaler": "request_count", "target": 4},
            {"READY_AFTER_S": "1"},
        )
    )
    (endpoints / "pair.hcl").write_text(
        _lb_hcl("pair", worker, {"min_workers": 2, "max_workers": 2, "scaler": "request_count", "target": 4})
    )
    (endpoints / "never.hcl").write_text(
        _lb_hcl("never", worker, {"min_workers": 0, "max_workers": 1}, {"READY_AFTER_S": "100000"})
    )
    stack = SkiffProcess(endpoints, root / "state", {"SKIFF_LB_HOLD_S": "6"}).start()
    stack.flavour = request.param  # type: ignore[attr-defined]
    yield stack
    stack.stop()


def _worker_count(client: httpx.Client, endpoint: str) -> int:
    doc = client.get("/v1/status").json()
    return len(next(e for e in doc["endpoints"] if e["name"] == endpoint)["workers"])


def test_request_to_a_zero_worker_endpoint_starts_one_and_waits_for_health(lb_stack: SkiffProcess) -> None:
    with lb_stack.client() as client:
        assert _worker_count(client, "solo") == 0
        response = client.get("/lb/solo/whoami")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["worker"].startswith("solo-")
        assert body["healthy"] is True, "traffic reached a worker before its health check passed"
        # Idle for longer than idle_timeout: back to zero.
        deadline = time.monotonic() + 30
        while _worker_count(client, "solo") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _worker_count(client, "solo") == 0


def test_method_path_query_headers_and_body_are_forwarded(lb_stack: SkiffProcess) -> None:
    with lb_stack.client() as client:
        payload = "x" * 100_000
        response = client.post(
            "/lb/pair/echo?a=1&b=two", content=payload, headers={"X-Custom": "kept", "Content-Type": "text/plain"}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["body"] == payload
        assert body["query"] == "a=1&b=two"
        assert body["headers"]["x-custom"] == "kept"
        assert "authorization" not in body["headers"], "the Skiff key leaked to the worker"
        assert response.headers["content-type"].startswith("application/json")


def test_a_body_over_30_mb_is_refused_with_413(lb_stack: SkiffProcess) -> None:
    too_big = b"x" * (30 * 1024 * 1024 + 1)
    with lb_stack.client(timeout=120) as client:
        declared = client.post("/lb/pair/echo", content=too_big)  # Content-Length: refused up front
        assert declared.status_code == 413, declared.text
        assert "limit for this route is 30 MB" in declared.json()["error"]
        if lb_stack.flavour == "plain":  # type: ignore[attr-defined]
            return  # http.server reads no chunked request body: only the declared case applies

        def chunks() -> Iterator[bytes]:  # no Content-Length: refused once it passes the limit
            for start in range(0, len(too_big), 1024 * 1024):
                yield too_big[start : start + 1024 * 1024]

        chunked = client.post("/lb/pair/echo", content=chunks())
        assert chunked.status_code == 413, chunked.text
        assert "limit for this route is 30 MB" in chunked.json()["error"]
        # The worker is released: the next request is served.
        assert client.post("/lb/pair/echo", content=b"small").status_code == 200


def test_the_key_is_checked_and_unknown_endpoints_are_clear_errors(lb_stack: SkiffProcess) -> None:
    assert httpx.get(f"{lb_stack.url}/lb/pair/whoami").status_code == 401
    with lb_stack.client() as client:
        missing = client.get("/lb/nope/whoami")
        assert missing.status_code == 404 and "nope" in missing.json()["error"]


def test_requests_spread_over_the_healthy_workers(lb_stack: SkiffProcess) -> None:
    with lb_stack.client() as client:
        deadline = time.monotonic() + 30
        while _worker_count(client, "pair") < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = {client.get("/lb/pair/whoami").json()["worker"] for _ in range(10)}
    assert len(seen) == 2, f"least-loaded routing used {seen}"


def test_response_is_streamed_not_buffered(lb_stack: SkiffProcess) -> None:
    """The worker sends its 2nd line only after /release: a buffering proxy would never show the
    1st line to the client, and this test would time out reading it."""
    with lb_stack.client() as client, client.stream("GET", "/lb/solo/stream?n=3", timeout=20) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        first = next(lines)
        assert first.startswith("line 0 from solo-")
        assert client.post("/lb/solo/release").status_code == 200
        rest = list(lines)
    assert [line.split(" from ")[0] for line in rest] == ["line 1", "line 2"]


def test_worker_killed_mid_stream_is_a_client_error_and_the_next_request_is_served(lb_stack: SkiffProcess) -> None:
    with lb_stack.client() as client:
        with client.stream("GET", "/lb/pair/stream?n=3", timeout=20) as response:
            assert response.status_code == 200
            pid = int(response.headers["x-worker-pid"])
            lines = response.iter_lines()
            victim = next(lines).split(" from ")[1]
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):
                list(lines)
        after = client.get("/lb/pair/whoami")
        assert after.status_code == 200, after.text
        assert after.json()["worker"] != victim


def test_no_healthy_worker_within_the_bound_is_503_with_retry_after(lb_stack: SkiffProcess) -> None:
    with lb_stack.client() as client:
        response = client.get("/lb/never/whoami")
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert "no healthy worker" in response.json()["error"]
