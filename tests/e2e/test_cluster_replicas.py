"""Several gateway replicas sharing SQS (moto), Redis and S3 (moto): replica A is a `skiff gateway`
process that clients call, replica B a `skiff up` process whose workers talk only to B. A job
accepted by A runs on B's workers; a /runsync waiting on A answers with the result B stored; A
killed with -9 under load loses none of the jobs it accepted."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import MotoServer, RedisServer
from tests.support.stack import GatewayReplica, SkiffProcess, endpoint_hcl
from tests.support.wait import wait_final

ECHO = "tests/workers/skiff_async_echo.py"


class Cluster:
    def __init__(self, a: GatewayReplica, b: SkiffProcess) -> None:
        self.a = a
        self.b = b


@pytest.fixture
def cluster(moto: MotoServer, redis: RedisServer, tmp_path: Path) -> Iterator[Cluster]:
    run = uuid.uuid4().hex[:8]  # this test's own queues, keys and bucket on the shared servers
    env = {
        **moto.env,
        "SKIFF_QUEUE": "sqs",
        "SKIFF_STORE": "redis",
        "SKIFF_PAYLOADS": "s3",
        "SKIFF_S3_BUCKET": f"skiff-{run}",
        "SKIFF_REDIS_URL": redis.url(),
        "SKIFF_REDIS_PREFIX": f"r{run}:",
        "SKIFF_SQS_QUEUE_PREFIX": f"r{run}-",
    }
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(
        endpoint_hcl("echo", ECHO, max_retries=3, scaling={"min_workers": 2, "max_workers": 2})
    )
    b = SkiffProcess(endpoints, tmp_path / "state-b", env)
    b.env["SKIFF_PUBLIC_URL"] = b.url  # B's workers talk to B; nothing talks to A but clients
    a = GatewayReplica(endpoints, tmp_path / "state-a", env)
    b.start(timeout=60)
    try:
        a.start(timeout=90)
        try:
            b.wait_ready_workers("echo", count=2, timeout=60)
            yield Cluster(a, b)
        finally:
            a.stop()
    finally:
        b.stop()


def test_runsync_on_a_answers_with_the_result_stored_through_b(cluster: Cluster) -> None:
    with cluster.a.client(timeout=60) as a:
        # A launched no worker: whatever runs the job talks to B.
        assert "Skiff gateway is up" in cluster.a.output()
        body = a.post("/v2/echo/runsync?wait=60000", json={"input": {"sleep": 0.2, "n": 1}}).json()
        assert body["status"] == "COMPLETED", body
        assert body["output"] == {"sleep": 0.2, "n": 1}
        assert str(body["workerId"]).startswith("echo-")
        accepted = a.post("/v2/echo/run", json={"input": {"via": "a"}}).json()
        # Above the 256 KiB inline limit: A puts the input in S3, B hands it to its worker, B puts
        # the echoed output in S3, A reads it back.
        big = {"pad": "p" * 400_000}
        big_id = a.post("/v2/echo/run", json={"input": big}).json()["id"]
        deadline = time.monotonic() + 30
        while (status := a.get(f"/v2/echo/status/{big_id}").json())["status"] != "COMPLETED":
            assert time.monotonic() < deadline and status["status"] in ("IN_QUEUE", "IN_PROGRESS"), status
            time.sleep(0.05)
        assert status["output"] == big
    with cluster.b.client() as b:
        # Both replicas read the same store: B knows the job A accepted.
        assert wait_final(b, "echo", accepted["id"], 30)["output"] == {"via": "a"}
        assert b.get(f"/v2/echo/status/{body['id']}").json()["status"] == "COMPLETED"


def test_skiff_gateway_stops_cleanly_on_sigterm(cluster: Cluster) -> None:
    assert cluster.a.stop(signal.SIGTERM) == 0
    assert "skiff gateway: stopped." in cluster.a.output()
    with cluster.b.client() as b:  # the other replica carries on
        assert b.post("/v2/echo/runsync?wait=30000", json={"input": "still up"}).json()["output"] == "still up"


def test_kill9_replica_a_under_load_loses_no_accepted_job(cluster: Cluster) -> None:
    accepted: list[str] = []
    refused = threading.Event()

    def load() -> None:
        with cluster.a.client(timeout=10) as a:
            for n in range(400):
                try:
                    reply = a.post("/v2/echo/run", json={"input": {"n": n, "sleep": 0.02}})
                except httpx.HTTPError:
                    refused.set()  # A is gone: a client would retry elsewhere
                    return
                if reply.status_code == 200:
                    accepted.append(reply.json()["id"])

    sender = threading.Thread(target=load)
    sender.start()
    deadline = time.monotonic() + 60
    while len(accepted) < 40 and sender.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    cluster.a.kill9()
    sender.join(30)
    assert refused.is_set(), "the load kept going: replica A was not killed mid-load"
    assert len(accepted) >= 40
    with cluster.b.client(timeout=30) as b:
        for n_job, job_id in enumerate(accepted):
            done = wait_final(b, "echo", job_id, 120)
            assert done["status"] == "COMPLETED", done
            assert isinstance(done["output"], dict) and done["output"]["sleep"] == 0.02, (n_job, done)


def test_metrics_of_two_replicas_sum_to_the_jobs_and_shared_gauges_come_from_the_leader_only(
    cluster: Cluster,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def scrape(client: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = client.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    n = 4
    with cluster.a.client(timeout=60) as a, cluster.b.client(timeout=60) as b:
        before = [scrape(a), scrape(b)]
        for i in range(n):
            body = a.post("/v2/echo/runsync?wait=60000", json={"input": {"n": i}}).json()
            assert body["status"] == "COMPLETED", body
        after = [scrape(a), scrape(b)]
    key = ("skiff_jobs_total", (("endpoint", "echo"), ("status", "COMPLETED")))
    assert sum(s.get(key, 0.0) for s in after) - sum(s.get(key, 0.0) for s in before) == n
    count = ("skiff_job_execution_seconds_count", (("endpoint", "echo"),))
    assert sum(s.get(count, 0.0) for s in after) - sum(s.get(count, 0.0) for s in before) == n
    # Workers and queue depth are shared state: B (skiff up, the leader) exports them, A none.
    assert not [k for k in after[0] if k[0] in ("skiff_workers", "skiff_queue_depth")]
    ready = sum(
        v for k, v in after[1].items() if k[0] == "skiff_workers" and dict(k[1])["state"] in ("idle", "running")
    )
    assert ready == 2
