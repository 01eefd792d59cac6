"""skiff.Endpoint / skiff.AsyncEndpoint against a small in-test server with Runpod's v2 client API.

The lead's end-to-end tests drive the same client against the real gateway; here the server is a
recorder, so request shapes can be checked exactly, including against `runpod.Endpoint`.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import runpod

import skiff
from skiff.client import SkiffAPIError, SkiffAuthError, SkiffConnectionError, SkiffNotFoundError

KEY = "client-key"


@dataclass
class FakeAPI:
    requests: list[tuple[str, str, Any, str | None]] = field(default_factory=list)
    polls: dict[str, int] = field(default_factory=dict)
    base: str = ""

    def answer(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        parts = path.strip("/").split("/")  # v2, endpoint, action, [id]
        if auth != f"Bearer {KEY}":
            return 401, {"error": "missing or invalid API key"}
        if len(parts) < 3 or parts[0] != "v2":
            return 404, {"error": "not found"}
        endpoint, action = parts[1], parts[2]
        if endpoint != "echo":
            return 404, {"error": f"no endpoint named {endpoint!r}"}
        job_id = parts[3] if len(parts) > 3 else ""
        if action in ("run", "runsync"):
            if not isinstance(body, dict) or body.get("input") is None:
                return 400, {"error": 'the body needs an "input" field'}
            job = "slow-1" if isinstance(body["input"], dict) and body["input"].get("slow") else "job-1"
            if action == "runsync" and job == "job-1":
                return 200, {"id": job, "status": "COMPLETED", "output": {"echo": body["input"]}}
            return 200, {"id": job, "status": "IN_QUEUE"}
        if action == "status":
            if job_id == "missing":
                return 404, {"error": "job 'missing' not found (results expire)"}
            seen = self.polls[job_id] = self.polls.get(job_id, 0) + 1
            if seen < 3:
                return 200, {"id": job_id, "status": "IN_PROGRESS"}
            return 200, {"id": job_id, "status": "COMPLETED", "output": {"done": job_id}, "executionTime": 5}
        if action == "stream":
            seen = self.polls[f"stream-{job_id}"] = self.polls.get(f"stream-{job_id}", 0) + 1
            pages = [
                ("IN_PROGRESS", [{"output": "a"}, {"output": "b"}]),
                ("IN_PROGRESS", []),
                ("COMPLETED", [{"output": "c"}]),
            ]
            status, chunks = pages[seen - 1] if seen <= len(pages) else ("COMPLETED", [])
            return 200, {"status": status, "stream": chunks}
        if action == "cancel":
            return 200, {"id": job_id, "status": "CANCELLED"}
        if action == "retry":
            return 200, {"id": job_id, "status": "IN_QUEUE"}
        if action == "health":
            return 200, {
                "jobs": {"completed": 1, "failed": 0, "inProgress": 0, "inQueue": 0, "retried": 0},
                "workers": {"idle": 1, "running": 0},
            }
        if action == "purge-queue":
            return 200, {"removed": 0, "status": "completed"}
        return 404, {"error": "not found"}


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    fake = FakeAPI()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            auth = self.headers.get("Authorization")
            fake.requests.append((self.command, self.path, body, auth))
            status, payload = fake.answer(self.command, self.path, body, auth)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def test_run_status_output_cancel(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        job = ep.run({"x": 1}, webhook="http://127.0.0.1:1/hook", policy={"executionTimeout": 5000})
        assert job.id == job.job_id == "job-1"
        assert job.status() == "IN_PROGRESS"
        assert job.output(timeout=30) == {"done": "job-1"}
        assert job.status() == "COMPLETED"
        assert job.details()["executionTime"] == 5
        assert job.cancel() == {"id": "job-1", "status": "CANCELLED"}
    method, path, body, auth = api.requests[0]
    assert (method, path, auth) == ("POST", "/v2/echo/run", f"Bearer {KEY}")
    assert body == {"input": {"x": 1}, "webhook": "http://127.0.0.1:1/hook", "policy": {"executionTimeout": 5000}}
    assert api.requests[-1][:2] == ("POST", "/v2/echo/cancel/job-1")


def test_full_request_is_sent_as_is(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        ep.run({"input": {"y": 2}, "webhook": "http://127.0.0.1:1/w"})
        ep.run([1, 2])
    assert [r[2] for r in api.requests] == [{"input": {"y": 2}, "webhook": "http://127.0.0.1:1/w"}, {"input": [1, 2]}]


def test_run_sync_fast_and_slow(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base + "/v2/", api_key=KEY) as ep:  # Runpod-style base works
        assert ep.run_sync({"x": 1}) == {"echo": {"x": 1}}
        assert ep.run_sync({"slow": True}, timeout=30) == {"done": "slow-1"}
    assert [r[1] for r in api.requests][:2] == ["/v2/echo/runsync", "/v2/echo/runsync"]
    assert "/v2/echo/status/slow-1" in [r[1] for r in api.requests]


def test_stream_yields_every_chunk_until_final(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        assert list(ep.run({"x": 1}).stream()) == ["a", "b", "c"]


def test_endpoint_level_calls(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        assert ep.status("job-1")["status"] == "IN_PROGRESS"
        assert ep.output("job-1", timeout=30) == {"done": "job-1"}
        assert ep.retry("job-1") == {"id": "job-1", "status": "IN_QUEUE"}
        assert ep.health()["workers"] == {"idle": 1, "running": 0}
        assert ep.purge_queue()["status"] == "completed"
    calls = [(m, p) for m, p, _, _ in api.requests]
    assert ("POST", "/v2/echo/retry/job-1") in calls
    assert ("GET", "/v2/echo/health") in calls
    assert ("POST", "/v2/echo/purge-queue") in calls


def test_errors_carry_the_server_message(api: FakeAPI) -> None:
    with skiff.Endpoint("echo", base_url=api.base, api_key="wrong") as ep, pytest.raises(SkiffAuthError) as auth:
        ep.run({"x": 1})
    assert auth.value.status_code == 401 and auth.value.message == "missing or invalid API key"
    with skiff.Endpoint("nope", base_url=api.base, api_key=KEY) as ep, pytest.raises(SkiffNotFoundError) as missing:
        ep.health()
    assert "no endpoint named 'nope'" in str(missing.value)
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        with pytest.raises(SkiffNotFoundError, match="results expire"):
            ep.status("missing")
        with pytest.raises(SkiffAPIError) as bad:
            ep.run({"input": None})
        assert bad.value.status_code == 400 and "input" in bad.value.message


def test_defaults_come_from_the_environment(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKIFF_BASE_URL", api.base)
    monkeypatch.setenv("SKIFF_API_KEY", KEY)
    with skiff.Endpoint("echo") as ep:
        assert ep.run_sync({"x": 1}) == {"echo": {"x": 1}}
    monkeypatch.delenv("SKIFF_BASE_URL")
    assert skiff.Endpoint("echo").base_url == "http://127.0.0.1:8000/v2"


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with (
        skiff.Endpoint("echo", base_url=url, api_key=KEY) as ep,
        pytest.raises(SkiffConnectionError, match=f"cannot reach Skiff at {url}/v2/echo/health"),
    ):
        ep.health()


def test_bad_endpoint_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="endpoint name"):
        skiff.Endpoint("a/b")


def test_same_requests_as_runpod_endpoint(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """runpod.Endpoint and skiff.Endpoint make the same calls for the same program."""
    monkeypatch.setattr(runpod, "endpoint_url_base", api.base + "/v2")

    def program(ep: Any) -> list[Any]:
        job = ep.run({"x": 1})
        return [job.status(), job.output(timeout=30), job.cancel(), ep.health(), ep.purge_queue()]

    theirs = program(runpod.Endpoint("echo", api_key=KEY))
    recorded_theirs, api.requests, api.polls = api.requests, [], {}
    with skiff.Endpoint("echo", base_url=api.base, api_key=KEY) as ep:
        ours = program(ep)
    assert ours == theirs
    # runpod posts no body for cancel/purge; Skiff neither. Polling counts may differ, shapes may not.
    assert sorted(set(map(json.dumps, api.requests))) == sorted(set(map(json.dumps, recorded_theirs)))


async def test_async_endpoint_twin(api: FakeAPI) -> None:
    async with skiff.AsyncEndpoint("echo", base_url=api.base, api_key=KEY) as ep:
        job = await ep.run({"x": 1})
        assert await job.status() == "IN_PROGRESS"
        assert await job.output(timeout=30) == {"done": "job-1"}
        assert await ep.run_sync({"x": 2}) == {"echo": {"x": 2}}
        assert await ep.run_sync({"slow": True}, timeout=30) == {"done": "slow-1"}
        assert [chunk async for chunk in job.stream()] == ["a", "b", "c"]
        assert (await job.cancel())["status"] == "CANCELLED"
        assert (await ep.retry("job-1"))["status"] == "IN_QUEUE"
        assert "workers" in await ep.health()
        assert (await ep.purge_queue())["status"] == "completed"
        with pytest.raises(SkiffNotFoundError):
            await ep.status("missing")
    assert api.requests[0] == ("POST", "/v2/echo/run", {"input": {"x": 1}}, f"Bearer {KEY}")
