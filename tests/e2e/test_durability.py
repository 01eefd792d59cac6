"""Nothing lost: a gateway killed with -9 under load, restarted on the same state, finishes every
accepted job; stopping Skiff leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.store.sqlite import SqliteStore
from tests.support.stack import SkiffProcess, endpoint_hcl

JOBS = 200


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and int(entry) not in found:
                found.add(int(entry))
                frontier.append(int(entry))
    return found


def _wait_gone(pids: set[int], timeout: float = 20) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = {p for p in pids if _alive(p)}
        if not alive:
            return set()
        time.sleep(0.1)
    return {p for p in pids if _alive(p)}


def test_kill9_gateway_with_200_queued_jobs_loses_none(
    tmp_path: Path, skiff_stack: Callable[..., SkiffProcess]
) -> None:
    files = {
        # The Skiff SDK takes its next job as soon as one finishes (runpod 1.12 waits a second
        # between takes at concurrency 1), so 200 jobs drain in seconds after the restart.
        "slow": endpoint_hcl("slow", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 2, "max_workers": 2})
    }
    # This test polls 200 jobs' status several times a second: more than Runpod's default limit
    # of 2000 status reads per 10 s allows (a 429 then reads as a job without output).
    unlimited_status = {"SKIFF_RATE_LIMITS": '{"status": {"requests": 0}}'}
    first = skiff_stack(files, extra_env=unlimited_status)
    first.wait_ready_workers("slow", 2)
    with first.client() as client:
        ids = [client.post("/v2/slow/run", json={"input": {"sleep": 0.05, "i": i}}).json()["id"] for i in range(JOBS)]
        queued = client.get("/v2/slow/health").json()["jobs"]["inQueue"]
    assert queued > JOBS // 2, "the worker drained the queue before the kill: make jobs slower"
    workers = _descendants(first.proc.pid)  # type: ignore[union-attr]
    first.kill9()
    assert not _wait_gone(workers), "workers outlived a kill -9 of skiff up"

    second = SkiffProcess(first.endpoints_dir, first.state_dir, extra_env=unlimited_status)
    second.start()
    try:
        with second.client() as client:
            deadline = time.monotonic() + 120
            pending = set(ids)
            while pending and time.monotonic() < deadline:
                for job_id in list(pending):
                    response = client.get(f"/v2/slow/status/{job_id}")
                    assert response.status_code == 200, response.text
                    body = response.json()
                    assert body["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"), body
                    if body["status"] == "COMPLETED":
                        pending.discard(job_id)
                time.sleep(0.2)
            assert not pending, f"{len(pending)} accepted jobs never completed after the restart"
            finals = [client.get(f"/v2/slow/status/{j}") for j in ids]
            assert all(r.status_code == 200 for r in finals), [r.text for r in finals if r.status_code != 200][:3]
            assert {r.json()["output"]["i"] for r in finals} == set(range(JOBS))
    finally:
        second.stop()


def test_stopping_skiff_leaves_no_orphans(skiff_stack: Callable[..., SkiffProcess]) -> None:
    files = {
        "a": endpoint_hcl("a", "tests/workers/runpod_async_echo.py", scaling={"min_workers": 2, "max_workers": 2}),
        "b": endpoint_hcl("b", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1}),
    }
    # Long polls as in production; the busy worker below outlives the stop grace and is killed.
    stack = skiff_stack(files, extra_env={"SKIFF_TAKE_WAIT_S": "20", "SKIFF_WORKER_STOP_GRACE_S": "2"})
    stack.wait_ready_workers("a", 2)
    stack.wait_ready_workers("b", 1)
    with stack.client() as client:
        client.post("/v2/a/run", json={"input": {"sleep": 60}})  # a busy worker must go too
    everyone = _descendants(stack.proc.pid)  # type: ignore[union-attr]
    assert len(everyone) >= 3
    assert stack.stop() == 0
    assert not _wait_gone(everyone, timeout=5), "processes left behind after skiff up stopped"
    assert "Traceback" not in stack.output(), "the stop printed tracebacks (cancelled long polls)"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_lets_the_job_in_hand_finish_and_store_its_result(
    sig: int, skiff_stack: Callable[..., SkiffProcess]
) -> None:
    """Workers stop before the gateway does, so a job that finishes within the stop grace is
    stored COMPLETED, not left IN_PROGRESS to run again after the next start."""
    stack = skiff_stack(
        {"e": endpoint_hcl("e", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})},
        extra_env={"SKIFF_TAKE_WAIT_S": "20"},
    )
    stack.wait_ready_workers("e", 1)
    with stack.client() as client:
        job_id = client.post("/v2/e/run", json={"input": {"sleep": 1.5, "n": 7}}).json()["id"]
        deadline = time.monotonic() + 20
        while client.get(f"/v2/e/status/{job_id}").json()["status"] == "IN_QUEUE":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
    assert stack.stop(sig) == 0
    output = stack.output()
    assert "stopped; all workers exited" in output, output
    assert "timeout graceful shutdown exceeded" not in output, "open long polls held up the stop"

    async def stored() -> JobRecord | None:
        store = SqliteStore(stack.state_dir / "skiff.db")
        try:
            return await store.get(job_id)
        finally:
            await store.close()

    job = asyncio.run(stored())
    assert job is not None and job.status is JobStatus.COMPLETED, job
    assert job.output == {"sleep": 1.5, "n": 7}


def test_a_stop_ends_the_long_poll_an_official_runpod_worker_waits_in(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    """runpod's worker sees its SIGTERM only when its job-take returns: the gateway ends a stopping
    worker's polls at once, so the stop takes neither the 60 s poll nor the 60 s grace (stop()
    fails after 20 s)."""
    stack = skiff_stack(
        {"r": endpoint_hcl("r", "tests/workers/runpod_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})},
        extra_env={"SKIFF_TAKE_WAIT_S": "60", "SKIFF_WORKER_STOP_GRACE_S": "60"},
    )
    stack.wait_ready_workers("r", 1)
    with stack.client() as client:
        assert client.post("/v2/r/runsync", json={"input": {"n": 1}}).json()["status"] == "COMPLETED"
    time.sleep(0.5)  # the worker is parked in its next job-take
    workers = _descendants(stack.proc.pid)  # type: ignore[union-attr]
    assert stack.stop() == 0
    assert not _wait_gone(workers, timeout=5)


def test_a_second_ctrl_c_kills_workers_instead_of_waiting_out_their_grace(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    stack = skiff_stack(
        {"e": endpoint_hcl("e", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})},
        extra_env={"SKIFF_WORKER_STOP_GRACE_S": "60"},
    )
    stack.wait_ready_workers("e", 1)
    with stack.client() as client:
        job_id = client.post("/v2/e/run", json={"input": {"sleep": 60}}).json()["id"]
        deadline = time.monotonic() + 20
        while client.get(f"/v2/e/status/{job_id}").json()["status"] == "IN_QUEUE":
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.05)
    workers = _descendants(stack.proc.pid)  # type: ignore[union-attr]
    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGINT)
    time.sleep(1)
    assert stack.proc.poll() is None, "the first Ctrl-C should wait for the job in hand"
    # Well inside the 60 s grace: only the second Ctrl-C can have ended it.
    assert stack.stop(signal.SIGINT) == 0
    assert not _wait_gone(workers, timeout=5), "workers outlived the second Ctrl-C"
    assert "Traceback" not in stack.output()


def test_a_key_from_skiff_api_key_is_never_printed(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "e.hcl").write_text(endpoint_hcl("e", "tests/workers/skiff_async_echo.py"))
    stack = SkiffProcess(endpoints, tmp_path / "state")
    stack.start()
    try:
        assert "from SKIFF_API_KEY" in stack.output() and stack.key not in stack.output()
    finally:
        stack.stop()
    assert stack.key not in stack.output()


def test_api_key_is_generated_once_and_printed(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "e.hcl").write_text(endpoint_hcl("e", "tests/workers/skiff_async_echo.py"))
    stack = SkiffProcess(endpoints, tmp_path / "state")
    del stack.env["SKIFF_API_KEY"]
    stack.start()
    try:
        key = (tmp_path / "state" / "api-key").read_text().strip()
        assert key.startswith("sk_") and len(key) > 30
        assert oct((tmp_path / "state" / "api-key").stat().st_mode & 0o777) == "0o600"
        # Printed once (the banner's curl example reads the file instead), and only when generated.
        assert stack.output().count(key) == 1 and "generated and saved" in stack.output()
        assert httpx.get(f"{stack.url}/v2/e/health").status_code == 401
        assert httpx.get(f"{stack.url}/v2/e/health", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    finally:
        stack.stop()
    again = SkiffProcess(endpoints, tmp_path / "state")
    del again.env["SKIFF_API_KEY"]
    again.start()
    try:
        assert (tmp_path / "state" / "api-key").read_text().strip() == key
        assert "generated and saved" not in again.output() and key not in again.output()
    finally:
        again.stop()
