"""Every client route and every job state, over real HTTP, with real worker processes built with
the Skiff SDK and with the official runpod SDK."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.support.stack import SkiffProcess
from tests.support.wait import wait_status


@pytest.fixture
def client(echo_stack: SkiffProcess) -> Iterator[httpx.Client]:
    with echo_stack.client() as c:
        yield c


def test_run_then_status_completes(client: httpx.Client) -> None:
    accepted = client.post("/v2/echo/run", json={"input": {"prompt": "hi", "n": [1, 2]}}).json()
    assert accepted["status"] == "IN_QUEUE" and accepted["id"]
    done = wait_status(client, "echo", accepted["id"], {"COMPLETED"})
    assert done["output"] == {"prompt": "hi", "n": [1, 2]}
    assert done["workerId"].startswith("echo-")
    assert isinstance(done["delayTime"], int) and isinstance(done["executionTime"], int)


def test_runsync_returns_the_output(client: httpx.Client) -> None:
    body = client.post("/v2/echo/runsync", json={"input": "plain string"}).json()
    assert body["status"] == "COMPLETED"
    assert body["output"] == "plain string"


def test_runsync_answers_in_progress_when_the_job_runs_long(client: httpx.Client) -> None:
    body = client.post("/v2/echo/runsync?wait=300", json={"input": {"sleep": 1.5}}).json()
    assert body["status"] in ("IN_QUEUE", "IN_PROGRESS")
    done = wait_status(client, "echo", body["id"], {"COMPLETED"})
    assert done["output"] == {"sleep": 1.5}


def test_handler_error_fails_the_job(client: httpx.Client) -> None:
    body = client.post("/v2/echo/runsync", json={"input": {"fail": "boom on purpose"}}).json()
    assert body["status"] == "FAILED"
    assert "boom on purpose" in json.dumps(body["error"])


def test_cancel_queued_and_running_jobs(client: httpx.Client) -> None:
    running = client.post("/v2/echo/run", json={"input": {"sleep": 30}}).json()["id"]
    wait_status(client, "echo", running, {"IN_PROGRESS"})
    queued = client.post("/v2/echo/run", json={"input": {"after": "cancel"}}).json()["id"]
    assert client.get(f"/v2/echo/status/{queued}").json()["status"] == "IN_QUEUE"

    assert client.post(f"/v2/echo/cancel/{queued}").json() == {"id": queued, "status": "CANCELLED"}
    assert client.post(f"/v2/echo/cancel/{running}").json() == {"id": running, "status": "CANCELLED"}
    # The running job was stopped through job-stop, so the single worker is free again at once.
    assert client.post("/v2/echo/runsync", json={"input": "next"}, timeout=20).json()["output"] == "next"
    for job_id in (queued, running):
        assert client.get(f"/v2/echo/status/{job_id}").json()["status"] == "CANCELLED"


def test_retry_a_cancelled_job_runs_it_again(client: httpx.Client) -> None:
    blocker = client.post("/v2/echo/run", json={"input": {"sleep": 30}}).json()["id"]
    wait_status(client, "echo", blocker, {"IN_PROGRESS"})
    job = client.post("/v2/echo/run", json={"input": {"again": True}}).json()["id"]
    client.post(f"/v2/echo/cancel/{job}")
    client.post(f"/v2/echo/cancel/{blocker}")
    retried = client.post(f"/v2/echo/retry/{job}").json()
    assert retried == {"id": job, "status": "IN_QUEUE"}
    assert wait_status(client, "echo", job, {"COMPLETED"})["output"] == {"again": True}
    # Only finished jobs can be retried.
    assert client.post(f"/v2/echo/retry/{job}").status_code == 400


def test_execution_timeout_ends_timed_out_and_frees_the_worker(client: httpx.Client) -> None:
    job = client.post("/v2/echo/run", json={"input": {"sleep": 30}, "policy": {"executionTimeout": 1000}}).json()
    done = wait_status(client, "echo", job["id"], {"TIMED_OUT"}, timeout=15)
    assert "execution timeout" in done["error"]
    assert client.post("/v2/echo/runsync", json={"input": 7}, timeout=20).json()["output"] == 7


def test_ttl_expiry_while_queued(client: httpx.Client) -> None:
    blocker = client.post("/v2/echo/run", json={"input": {"sleep": 30}}).json()["id"]
    wait_status(client, "echo", blocker, {"IN_PROGRESS"})
    job = client.post("/v2/echo/run", json={"input": 1, "policy": {"ttl": 500}}).json()["id"]
    done = wait_status(client, "echo", job, {"TIMED_OUT"}, timeout=10)
    assert "ttl" in done["error"]
    client.post(f"/v2/echo/cancel/{blocker}")


def test_ttl_ends_a_running_job_too(client: httpx.Client) -> None:
    """Runpod's TTL counts from submission and covers the run: a job still running when it
    passes ends TIMED_OUT, its worker told to stop, well before its execution timeout."""
    job = client.post(
        "/v2/echo/run", json={"input": {"sleep": 30}, "policy": {"ttl": 2000, "executionTimeout": 60000}}
    ).json()["id"]
    wait_status(client, "echo", job, {"IN_PROGRESS"})
    done = wait_status(client, "echo", job, {"TIMED_OUT"}, timeout=15)
    assert "ttl of 2s" in done["error"] and "while it ran" in done["error"], done
    assert client.post("/v2/echo/runsync", json={"input": 8}, timeout=20).json()["output"] == 8


def test_low_priority_jobs_wait_for_normal_ones(client: httpx.Client) -> None:
    blocker = client.post("/v2/echo/run", json={"input": {"sleep": 1}}).json()["id"]
    wait_status(client, "echo", blocker, {"IN_PROGRESS"})
    low = client.post("/v2/echo/run", json={"input": "low", "policy": {"lowPriority": True}}).json()["id"]
    normal = client.post("/v2/echo/run", json={"input": "normal"}).json()["id"]
    low_done = wait_status(client, "echo", low, {"COMPLETED"})
    normal_done = wait_status(client, "echo", normal, {"COMPLETED"})
    assert normal_done["delayTime"] < low_done["delayTime"]


def test_purge_queue_cancels_queued_jobs(client: httpx.Client) -> None:
    blocker = client.post("/v2/echo/run", json={"input": {"sleep": 30}}).json()["id"]
    wait_status(client, "echo", blocker, {"IN_PROGRESS"})
    queued = [client.post("/v2/echo/run", json={"input": i}).json()["id"] for i in range(3)]
    assert client.post("/v2/echo/purge-queue").json() == {"removed": 3, "status": "completed"}
    for job_id in queued:
        assert client.get(f"/v2/echo/status/{job_id}").json()["status"] == "CANCELLED"
    client.post(f"/v2/echo/cancel/{blocker}")


def test_health_counts_jobs_and_workers(client: httpx.Client) -> None:
    client.post("/v2/echo/runsync", json={"input": "count me"})
    health = client.get("/v2/echo/health").json()
    assert health["jobs"]["completed"] >= 1
    assert set(health["jobs"]) >= {"completed", "failed", "inProgress", "inQueue", "retried"}
    assert health["workers"]["ready"] == 1
    assert health["coldStartMs"]["count"] >= 1 and health["coldStartMs"]["last"] > 0


def test_stream_returns_chunks_once_and_aggregates(client: httpx.Client) -> None:
    job = client.post("/v2/stream/run", json={"input": {"text": "one two three four", "delay": 0.2}}).json()["id"]
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        body = client.get(f"/v2/stream/stream/{job}").json()
        seen.extend(chunk["output"] for chunk in body["stream"])
        if body["status"] == "COMPLETED" and not body["stream"]:
            break
        time.sleep(0.1)
    assert seen == ["one", "two", "three", "four"]
    assert client.get(f"/v2/stream/status/{job}").json()["output"] == ["one", "two", "three", "four"]


class _Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    fail_first = 0

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if _Hooks.fail_first > 0:
            _Hooks.fail_first -= 1
            self.send_response(503)
        else:
            _Hooks.received.append(body)
            self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_webhook_receives_the_final_status_with_retries(client: httpx.Client) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hooks.received.clear()
    _Hooks.fail_first = 1  # the first delivery fails: the gateway must retry
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        job = client.post("/v2/echo/run", json={"input": {"hooked": 1}, "webhook": url}).json()["id"]
        deadline = time.monotonic() + 20
        while not _Hooks.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _Hooks.received, "webhook never arrived"
        assert _Hooks.received[0]["id"] == job
        assert _Hooks.received[0]["status"] == "COMPLETED"
        assert _Hooks.received[0]["output"] == {"hooked": 1}
    finally:
        server.shutdown()


def test_worker_killed_mid_job_is_redelivered(echo_stack: SkiffProcess, client: httpx.Client) -> None:
    import os
    import signal

    job = client.post("/v2/echo/run", json={"input": {"sleep": 2, "tag": "survivor"}}).json()["id"]
    running = wait_status(client, "echo", job, {"IN_PROGRESS"})
    worker_id = running["workerId"]
    pid = _pid_of_worker(echo_stack, worker_id)
    os.kill(pid, signal.SIGKILL)
    done = wait_status(client, "echo", job, {"COMPLETED"}, timeout=40)
    assert done["output"] == {"sleep": 2, "tag": "survivor"}
    assert done["retries"] >= 1
    assert done["workerId"] != worker_id
    assert client.get("/v2/echo/health").json()["jobs"]["retried"] >= 1


def _pid_of_worker(stack: SkiffProcess, worker_id: str) -> int:
    for pid in stack.worker_pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if f"RUNPOD_POD_ID={worker_id}".encode() in handle.read().split(b"\0"):
                    return pid
        except OSError:
            continue
    raise AssertionError(f"no process for worker {worker_id}")
