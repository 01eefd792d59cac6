"""SQS batching under a kill -9 (moto's SQS server, redis-server, `skiff up` with workers).

`skiff up` batches its sends and deletes and holds received messages for its job-takes. Killed
with -9 while jobs are being accepted and run, then restarted on the same queues and store: every
accepted job completes, and a job that had completed before the kill never runs again (a delete
lost in a batch means a redelivery, which the job store's final state turns away).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.services import MotoServer, RedisServer
from tests.support.stack import SkiffProcess, endpoint_hcl
from tests.support.wait import wait_final

JOBS = 150


@pytest.mark.timeout(600)  # two `skiff up` starts, each slow on a loaded machine
def test_kill9_while_batching_completes_every_accepted_job_and_reruns_no_completed_one(
    moto: MotoServer, redis: RedisServer, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    ledger = tmp_path / "ledger"
    env = {
        **moto.env,
        "SKIFF_QUEUE": "sqs",
        "SKIFF_STORE": "redis",
        "SKIFF_REDIS_URL": redis.url(),
        "SKIFF_REDIS_PREFIX": f"k{run}:",
        "SKIFF_SQS_QUEUE_PREFIX": f"k{run}-",
        "SKIFF_SQS_BATCHING": "true",
        # Slower than tests/support/stack.py's crash-test timings: a worker starved of CPU on a
        # busy machine must not be declared lost (and replaced) before it ever runs a job.
        "SKIFF_LEASE_S": "10",
        "SKIFF_PING_INTERVAL_S": "2",
        "SKIFF_WORKER_LOST_AFTER_S": "60",
    }
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(
        endpoint_hcl(
            "echo",
            "tests/workers/skiff_ledger_echo.py",
            env={"LEDGER": str(ledger)},
            scaling={"min_workers": 2, "max_workers": 2},
        )
    )
    first = SkiffProcess(endpoints, tmp_path / "state", env)
    first.start(timeout=180)
    accepted: list[str] = []
    try:
        first.wait_ready_workers("echo", 2, timeout=180)
        with first.client(timeout=10) as client:

            def submit(n: int) -> str | None:
                try:
                    reply = client.post("/v2/echo/run", json={"input": {"n": n, "sleep": 0.02}})
                except httpx.HTTPError:
                    return None  # skiff up is gone: the client never heard of this job
                return str(reply.json()["id"]) if reply.status_code == 200 else None

            # Many sends in flight at once, so they share SendMessageBatch requests.
            with ThreadPoolExecutor(16) as pool:
                accepted += [i for i in pool.map(submit, range(JOBS // 2)) if i]
                later = pool.map(submit, range(JOBS // 2, JOBS))
                deadline = time.monotonic() + 60
                while not ledger.exists() or len(ledger.read_text().split()) < 20:
                    assert time.monotonic() < deadline, "the workers ran no job"
                    time.sleep(0.02)
                completed_before = {
                    j for j in accepted if client.get(f"/v2/echo/status/{j}").json()["status"] == "COMPLETED"
                }
                first.kill9()
                accepted += [i for i in later if i]
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.kill9()
    assert completed_before, "no job had completed before the kill"
    assert len(completed_before) < len(accepted), "every job had completed before the kill: nothing was at stake"

    second = SkiffProcess(endpoints, tmp_path / "state", env)
    second.start(timeout=180)
    try:
        with second.client(timeout=30) as client:
            for job_id in accepted:
                done = wait_final(client, "echo", job_id, 120)
                assert done["status"] == "COMPLETED", done
    finally:
        second.stop()
    runs = Counter(ledger.read_text().split())
    assert set(accepted) <= set(runs), "an accepted job never ran"
    assert [j for j in completed_before if runs[j] != 1] == [], "a job completed before the kill ran again"
    # At-least-once for the rest: only a job running at the kill may have run a second time.
    assert max(runs.values()) <= 2, runs.most_common(3)
