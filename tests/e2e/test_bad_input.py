"""Bad input gets a 4xx with a clear JSON message: never a 500, never a traceback."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request

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


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x",
        "http://127.0.0.1:9/\x05",
        "http://[::1",
        "http://",
        "https:///path",
        "http://host:99999/",
        "http://host:port/",
        "http://host:0/",
        "http://exa mple.com/",
        "http://example.com/\x7f",
        7,
    ],
)
def test_bad_webhook(echo_stack: SkiffProcess, raw: httpx.Client, url: object) -> None:
    r = raw.post("/v2/echo/run", json={"input": 1, "webhook": url}, headers=_auth(echo_stack))
    _assert_error(r, 400, "webhook")


def test_good_webhook_urls_are_accepted(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    for url in ("http://127.0.0.1:9/hook?x=1", "https://[::1]:8443/h", "http://example.com"):
        r = raw.post("/v2/echo/run", json={"input": 1, "webhook": url}, headers=_auth(echo_stack))
        assert r.status_code == 200, (url, r.text)


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
    worker_key = stack_worker_key(echo_stack.state_dir, "echo")
    chunk = b'{"output": "' + b"x" * (1024 * 1024) + b'"}'
    r = raw.post("/v2/echo/job-stream/w1/x?isStream=true", content=chunk, headers={"Authorization": worker_key})
    _assert_error(r, 413, "stream chunk too large: the limit for this route is 1 MB")


def test_bad_query_values(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    _assert_error(raw.post("/v2/echo/runsync?wait=soon", json={"input": 1}, headers=_auth(echo_stack)), 400, "wait")
    r = raw.get("/v2/echo/job-take-batch/w1?batch_size=lots", headers=_auth(echo_stack))
    _assert_error(r, 400, "batch_size")


def test_wrong_method(echo_stack: SkiffProcess, raw: httpx.Client) -> None:
    r = raw.get("/v2/echo/run", headers=_auth(echo_stack))
    _assert_error(r, 405, "not allowed")
    assert r.headers["allow"] == "POST"
    r = raw.delete("/v2/echo/status/x", headers=_auth(echo_stack))
    _assert_error(r, 405, "not allowed")
    assert sorted(r.headers["allow"].split(", ")) == ["GET", "HEAD", "POST"]


@pytest.mark.parametrize(("path", "key", "status"), [("/v2/echo/run", True, 413), ("/v2/echo/run", False, 401)])
def test_an_early_error_reaches_a_client_that_sends_its_whole_body_first(
    echo_stack: SkiffProcess, path: str, key: bool, status: int
) -> None:
    # urllib writes the whole body before it reads a byte of the answer: had the gateway closed
    # the connection without reading the body, the client would see a reset, not the error.
    body = b'{"input": "' + b"x" * (20 * 1024 * 1024) + b'"}'
    headers = {"Content-Type": "application/json", **(_auth(echo_stack) if key else {})}
    request = urllib.request.Request(echo_stack.url + path, data=body, headers=headers, method="POST")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=60)
    assert caught.value.code == status
    assert "error" in json.loads(caught.value.read())


def test_a_client_hanging_up_mid_body_is_one_log_line_not_a_traceback(echo_stack: SkiffProcess) -> None:
    before = len(echo_stack.output())
    with socket.create_connection(("127.0.0.1", echo_stack.port)) as sock:
        sock.sendall(
            b"POST /v2/echo/run HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {echo_stack.key}\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"input": "abc'
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 10
    while "hung up" not in echo_stack.output()[before:] and time.monotonic() < deadline:
        time.sleep(0.1)
    logged = echo_stack.output()[before:]
    assert "hung up before sending its whole body" in logged, logged
    assert "Traceback" not in logged and "unexpected error" not in logged, logged
