"""Metrics and waiting reasons of a real `skiff up`: the Prometheus exposition (parsed with
prometheus-client's own parser) after N jobs, the key it needs, and why a queued job waits
(max_workers reached, a crash loop) as `/status` and `skiff status` tell it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.stack import SKIFF, SkiffProcess, endpoint_hcl
from tests.support.wait import wait_status

ECHO = "examples/workers/echo.py"
CRASH = "tests/workers/crash_on_start.py"


def scrape(client: httpx.Client, path: str = "/metrics") -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the exposition, by name and sorted labels."""
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"sample {key} exported twice"
            samples[key] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def eventually_status(
    client: httpx.Client, endpoint: str, job_id: str, cond: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v2/{endpoint}/status/{job_id}").json()
        if cond(body):
            return body
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: condition never met; last /status {body}")


@pytest.mark.timeout(480)  # a cold `skiff up` and its worker on a busy machine
def test_metrics_count_every_job_once_and_say_why_a_job_waits_at_max_workers(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    stack = skiff_stack(
        {"echo": endpoint_hcl("echo", ECHO, scaling={"max_workers": 1, "idle_timeout": "60s"})}, timeout=120
    )
    n = 5
    with stack.client(timeout=60) as client:
        for i in range(n):
            job = client.post("/v2/echo/run", json={"input": {"n": i}}).json()["id"]
            wait_status(client, "echo", job, {"COMPLETED"}, timeout=120)
        samples = scrape(client)
        assert value(samples, "skiff_jobs_total", endpoint="echo", status="COMPLETED") == n
        assert value(samples, "skiff_job_delay_seconds_count", endpoint="echo") == n
        assert value(samples, "skiff_job_execution_seconds_count", endpoint="echo") == n
        assert value(samples, "skiff_job_execution_seconds_bucket", endpoint="echo", le="+Inf") == n
        # Each worker that became ready is one cold start sample, and none without a launch.
        launches = value(samples, "skiff_worker_launches_total", endpoint="echo")
        assert 1 <= value(samples, "skiff_worker_cold_start_seconds_count", endpoint="echo") <= launches
        assert value(samples, "skiff_scaling_decisions_total", endpoint="echo", reason="wake") >= 1
        # The leader's gauges of shared state.
        assert (
            value(samples, "skiff_workers", endpoint="echo", state="idle")
            + value(samples, "skiff_workers", endpoint="echo", state="running")
            == 1
        )
        assert ("skiff_queue_depth", (("endpoint", "echo"),)) in samples
        assert value(samples, "skiff_workers_wanted", endpoint="echo") == 1
        # HTTP requests by route template (never by job id) and status.
        runs = value(
            samples,
            "skiff_http_requests_total",
            route="/v2/{endpoint}/run",
            method="POST",
            status="200",
            endpoint="echo",
        )
        assert runs == n
        assert (
            value(samples, "skiff_http_request_duration_seconds_count", route="/v2/{endpoint}/run", endpoint="echo")
            == n
        )
        client.get("/v2/nope/health")
        assert (
            value(
                scrape(client),
                "skiff_http_requests_total",
                route="/v2/{endpoint}/health",
                method="GET",
                status="404",
                endpoint="-",
            )
            == 1
        )

        # max_workers = 1 and its worker busy: the next job waits, and says so.
        busy = client.post("/v2/echo/run", json={"input": {"sleep": 45}}).json()["id"]
        wait_status(client, "echo", busy, {"IN_PROGRESS"})
        queued = client.post("/v2/echo/run", json={"input": {"n": "after"}}).json()["id"]
        body = eventually_status(client, "echo", queued, lambda b: "waitingReason" in b)
        assert body["status"] == "IN_QUEUE"
        assert body["waitingReason"]["code"] == "max_workers", body
        assert "max_workers=1" in body["waitingReason"]["message"]
        status = subprocess.run(
            [SKIFF, "status", "--url", stack.url], env=stack.env, capture_output=True, text=True, timeout=90
        )
        assert status.returncode == 0, status.stderr
        assert "max_workers=1 reached" in status.stdout
        # Long enough for `skiff status` to start on a busy machine; then the queued job runs.
        done = wait_status(client, "echo", queued, {"COMPLETED"}, timeout=150)
        assert "waitingReason" not in done

    # Every route checks its key: /metrics too.
    assert httpx.get(f"{stack.url}/metrics").status_code == 401
    assert httpx.get(f"{stack.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.timeout(480)  # a cold `skiff up` and its worker on a busy machine
def test_a_crash_loop_is_the_reason_with_the_exit_code_and_the_workers_last_lines(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    stack = skiff_stack(
        {"broken": endpoint_hcl("broken", CRASH, scaling={"max_workers": 1}), "echo": endpoint_hcl("echo", ECHO)},
        timeout=120,
    )
    with stack.client() as client:
        job = client.post("/v2/broken/run", json={"input": {}}).json()["id"]
        body = eventually_status(
            client, "broken", job, lambda b: (b.get("waitingReason") or {}).get("code") == "crash_loop"
        )
        reason = body["waitingReason"]
        assert body["status"] == "IN_QUEUE"
        assert reason["exit_code"] == 3
        assert "exited with code 3" in reason["message"]
        assert any("crash_on_start" in line for line in reason["output"]), reason
        assert reason["worker_id"].startswith("broken-")
        samples = scrape(client)
        assert value(samples, "skiff_worker_exits_total", endpoint="broken", cause="crashed") >= 1
        doc = client.get("/v1/status").json()
        trouble = doc["endpoints"][0]["trouble"]
        assert trouble["kind"] == "crash_loop" and trouble["exit_code"] == 3
        # The crashed workers' records outlive them, with the exit code and their last lines.
        exited = doc["endpoints"][0]["exited"]
        assert exited and exited[0]["exit_code"] == 3 and exited[0]["id"].startswith("broken-"), exited
        assert any("crash_on_start" in line for line in exited[0]["last_output"]), exited
        page = client.get("/v1/console/endpoints/broken").json()
        assert any(w["exit_code"] == 3 and w["last_output"] for w in page["exited"]), page["exited"]
        status = subprocess.run(
            [SKIFF, "status", "--url", stack.url], env=stack.env, capture_output=True, text=True, timeout=90
        )
        assert "crash-looping" in status.stdout and "code 3" in status.stdout, status.stdout
        assert f"worker {exited[0]['id'][:12]}" in status.stdout and "exited with code 3" in status.stdout, (
            status.stdout
        )

        # The endpoint goes away with the job still queued: that is the reason now.
        (stack.endpoints_dir / "broken.hcl").unlink()
        body = eventually_status(
            client, "broken", job, lambda b: (b.get("waitingReason") or {}).get("code") == "endpoint_removed"
        )
        assert body["status"] == "IN_QUEUE" and "removed" in body["waitingReason"]["message"]
