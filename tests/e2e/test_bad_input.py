"""Bad input gets a 4xx with a clear JSON message: never a 500, never a traceback."""

from __future__ import annotations

import httpx
import pytest

from tests.support.stack import SkiffProcess
from tests.support.stack import worker_key as stack_worker_key


@pytest.fixture
def raw(echo_stack: SkiffProcess) -> httpx.Client:
    return httpx.Client(base_url=echo_stack.url, timeout=30)


def _auth(stack: SkiffProcess, key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key or stack.key}"}


def _assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert fragment in body["error"], body
    assert "Traceback" not in response.text


def test_malformed_json(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    r = raw.post("/v2/echo/run", content=b"{not json", headers=_auth(echo_stack))
    _assert_error(r, 400, "not valid JSON")


@pytest.mark.parametrize("body", [{}, {"inputs": 1}, [1, 2], "text"])
def test_missing_input(echo_stack: SkiffProcess, raw: httpx.Client, body: object) -> None:
    r = raw.post("/v2/echo/run", json=body, headers=_auth(echo_stack))
    _assert_error(r, 400, "input")


@pytest.mark.parametrize(
    ("policy", "fragment"),
    [
        ({"executionTimeout": -5}, "executionTimeout"),
        ({"ttl": "soon"}, "ttl"),
        ({"lowPriority": "yes"}, "lowPriority"),
        ("fast", "policy"),
    ],
)
def test_bad_policy(echo_stack: SkiffProcess, raw: httpx.Client, policy: object, fragment: str) -> None:
    r = raw.post("/v2/echo/run", json={"input": 1, "policy": policy}, headers=_auth(echo_stack))
    _assert_error(r, 400, fragment)


def test_bad_webhook(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    r = raw.post("/v2/echo/run", json={"input": 1, "webhook": "ftp://x"}, headers=_auth(echo_stack))
    _assert_error(r, 400, "webhook")


def test_unknown_endpoint_and_job(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    _assert_error(raw.post("/v2/nope/run", json={"input": 1}, headers=_auth(echo_stack)), 404, "'nope' not found")
    _assert_error(raw.get("/v2/echo/status/does-not-exist", headers=_auth(echo_stack)), 404, "not found")
    _assert_error(raw.get("/v3/whatever", headers=_auth(echo_stack)), 404, "no route")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/echo/run"),
        ("POST", "/v2/echo/runsync"),
        ("GET", "/v2/echo/status/x"),
        ("GET", "/v2/echo/status-sync/x"),
        ("GET", "/v2/echo/stream/x"),
        ("POST", "/v2/echo/cancel/x"),
        ("POST", "/v2/echo/retry/x"),
        ("POST", "/v2/echo/purge-queue"),
        ("GET", "/v2/echo/health"),
        ("GET", "/v2/echo/job-take/w1?gpu=none&job_in_progress=0"),
        ("GET", "/v2/echo/job-take-batch/w1?batch_size=2"),
        ("POST", "/v2/echo/job-done/w1/x?isStream=false"),
        ("POST", "/v2/echo/job-stream/w1/x?isStream=false"),
        ("GET", "/v2/echo/job-stop/w1"),
        ("GET", "/v2/echo/ping/w1"),
    ],
)
def test_every_route_checks_its_key(raw: httpx.Client, method: str, path: str) -> None:
    _assert_error(raw.request(method, path, json={"input": 1}), 401, "missing API key")
    _assert_error(
        raw.request(method, path, json={"input": 1}, headers={"Authorization": "Bearer wrong"}), 401, "invalid API key"
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v2/echo/run"), ("GET", "/v2/echo/ping/w1"), ("GET", "/v2/%C3%A9/ping/w1"), ("POST", "/v2/%C3%A9/run")],
)
def test_a_key_or_endpoint_with_non_ascii_characters_is_a_401_not_a_500(
    raw: httpx.Client, method: str, path: str
) -> None:
    # A raw byte such as 0xe9 in the header, or a non-ASCII endpoint name, once crashed the key check.
    for key in (b"Bearer \xe9", b"Bearer caf\xc3\xa9", b"Bearer wrong"):
        r = raw.request(method, path, json={"input": 1}, headers=[(b"Authorization", key)])
        _assert_error(r, 401, "invalid API key")


def test_worker_key_is_scoped_to_its_endpoint(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    worker_key = stack_worker_key(echo_stack.state_dir, "other")
    # Valid on its own endpoint's worker routes (no job waiting -> 204 after the long poll)...
    assert raw.get("/v2/other/ping/w1", headers={"Authorization": worker_key}).status_code == 200
    # ...refused on another endpoint's worker routes and on the client API.
    r = raw.get("/v2/echo/job-take/w1?gpu=none&job_in_progress=0", headers={"Authorization": worker_key})
    _assert_error(r, 403, "not valid for endpoint 'echo'")
    _assert_error(
        raw.post("/v2/other/run", json={"input": 1}, headers=_auth(echo_stack, worker_key)), 403, "worker key"
    )


def test_bare_key_is_accepted_like_runpod(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    r = raw.get("/v2/echo/health", headers={"Authorization": echo_stack.key})
    assert r.status_code == 200


@pytest.mark.parametrize(("route", "limit_mb"), [("run", 10), ("runsync", 20)])
def test_oversized_body(echo_stack: SkiffProcess, raw: httpx.Client, route: str, limit_mb: int) -> None:
    too_big = b'{"input": "' + b"x" * (limit_mb * 1024 * 1024) + b'"}'
    r = raw.post(f"/v2/echo/{route}", content=too_big, headers=_auth(echo_stack))
    _assert_error(r, 413, f"limit for this route is {limit_mb} MB")


def test_oversized_stream_chunk(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    from skiff_core.keys import KeyRing

    worker_key = KeyRing(echo_stack.key).worker_key("echo")
    chunk = b'{"output": "' + b"x" * (1024 * 1024) + b'"}'
    r = raw.post("/v2/echo/job-stream/w1/x?isStream=true", content=chunk, headers={"Authorization": worker_key})
    _assert_error(r, 413, "stream chunk too large: the limit for this route is 1 MB")


def test_bad_query_values(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    _assert_error(raw.post("/v2/echo/runsync?wait=soon", json={"input": 1}, headers=_auth(echo_stack)), 400, "wait")
    r = raw.get("/v2/echo/job-take-batch/w1?batch_size=lots", headers=_auth(echo_stack))
    _assert_error(r, 400, "batch_size")


def test_wrong_method(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    _assert_error(raw.get("/v2/echo/run", headers=_auth(echo_stack)), 405, "not allowed")
