"""The controller end to end: live edits (rolling replacement), `skiff apply` / `skiff status`,
leader takeover between two `skiff up` processes on one state dir, and worker lifecycle
(execution-timeout kill, silent workers, refresh_worker)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.stack import REPO, SKIFF, SkiffProcess, endpoint_hcl
from tests.support.wait import eventually, wait_final


def _status(client: httpx.Client) -> dict[str, Any]:
    return client.get("/v1/status").json()


def _endpoint(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in doc["endpoints"] if e["name"] == name)


def _roll_hcl(version: str) -> str:
    return endpoint_hcl(
        "roll",
        "tests/workers/versioned_echo.py",
        env={"VERSION": version},
        scaling={"min_workers": 2, "max_workers": 3, "idle_timeout": "30s"},
    )


def test_editing_an_endpoint_file_replaces_workers_without_failing_a_job(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    stack = skiff_stack({"roll": _roll_hcl("1")})
    stack.wait_ready_workers("roll", 2)
    ids: list[str] = []
    stop = threading.Event()

    def submit() -> None:
        with stack.client() as client:
            while not stop.is_set():
                ids.append(client.post("/v2/roll/run", json={"input": {"sleep": 0.3, "n": len(ids)}}).json()["id"])
                time.sleep(0.1)

    with stack.client() as client:
        old_workers = {w["id"] for w in _endpoint(_status(client), "roll")["workers"]}
        submitter = threading.Thread(target=submit)
        submitter.start()
        try:
            time.sleep(1.5)
            (stack.endpoints_dir / "roll.hcl").write_text(_roll_hcl("2"))

            def replaced() -> bool:
                workers = _endpoint(_status(client), "roll")["workers"]
                return len(workers) >= 2 and all(w["current"] and w["id"] not in old_workers for w in workers)

            eventually(replaced, timeout=60, what="every worker to run the new version")
            time.sleep(1.5)  # keep submitting for a while on the new version
        finally:
            stop.set()
            submitter.join(10)
        results = [wait_final(client, "roll", job_id) for job_id in ids]
    assert "endpoint roll changed" in stack.output()
    failed = [r for r in results if r["status"] != "COMPLETED" or r.get("retries")]
    assert not failed, f"jobs failed or were re-delivered during the rollout: {failed}"
    versions = [r["output"]["version"] for r in results]
    assert versions[0] == "1" and versions[-1] == "2", versions
    # Once a job ran on version 2, no later-submitted job was sent back to an old worker for long:
    # the old workers drained.
    assert "2" in versions and versions.index("2") < len(versions) - 1


def test_skiff_apply_and_status_over_http(skiff_stack: Callable[..., SkiffProcess], tmp_path: Path) -> None:
    stack = skiff_stack({"one": endpoint_hcl("one", "tests/workers/skiff_async_echo.py")})
    desired = tmp_path / "desired"
    desired.mkdir()
    (desired / "two.hcl").write_text(
        endpoint_hcl("two", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1})
    )
    env = {**stack.env}
    cli = [SKIFF, "apply", str(desired), "--url", stack.url]
    applied = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, env=env, timeout=30)
    assert applied.returncode == 0, applied.stderr
    assert "+ two (added)" in applied.stdout and "- one (removed)" in applied.stdout
    again = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, env=env, timeout=30)
    assert "no changes" in again.stdout
    stack.wait_ready_workers("two", 1)
    with stack.client() as client:
        assert client.post("/v2/two/runsync", json={"input": {"x": 2}}).json()["output"] == {"x": 2}
        assert client.get("/v2/one/health").status_code == 404
    shown = subprocess.run(
        [SKIFF, "status", "--url", stack.url], capture_output=True, text=True, cwd=REPO, env=env, timeout=30
    )
    assert shown.returncode == 0, shown.stderr
    assert "controller: leading" in shown.stdout
    assert "two" in shown.stdout and "idle" in shown.stdout and "one" not in shown.stdout.split("worker")[0]
    bad = desired / "bad.hcl"
    bad.write_text('endpoint "bad" {\n  type = "queue"\n}\n')
    refused = subprocess.run(cli, capture_output=True, text=True, cwd=REPO, env=env, timeout=30)
    assert refused.returncode == 1 and "bad.hcl" in refused.stderr and "Traceback" not in refused.stderr
    wrong_key = subprocess.run(
        [SKIFF, "status", "--url", stack.url],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**env, "SKIFF_API_KEY": "sk_wrong"},
        timeout=30,
    )
    assert wrong_key.returncode == 1 and "401" in wrong_key.stderr


def test_a_dead_controller_is_replaced_by_the_waiting_one(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "e.hcl").write_text(
        endpoint_hcl("e", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})
    )
    leader = SkiffProcess(endpoints, tmp_path / "state").start()
    standby = SkiffProcess(endpoints, tmp_path / "state")
    try:
        leader.wait_ready_workers("e", 1)
        standby.start()
        assert "controller: standby" in standby.output()
        with standby.client() as client:
            assert _status(client)["leader"] is False
            # The standby's gateway serves the shared queue; the leader's workers run the job.
            first = client.post("/v2/e/runsync", json={"input": {"before": 1}}).json()
            assert first["status"] == "COMPLETED"
            leader.kill9()
            queued = client.post("/v2/e/run", json={"input": {"after": 1}}).json()["id"]
            eventually(lambda: _status(client)["leader"] is True, timeout=20, what="the standby to take the lock")
            body = wait_final(client, "e", queued)
            assert body["status"] == "COMPLETED" and body["output"] == {"after": 1}
            assert body["workerId"] != first["workerId"]
    finally:
        standby.stop()
        leader.stop()


def test_worker_lifecycle_timeout_kill_silent_worker_and_refresh(skiff_stack: Callable[..., SkiffProcess]) -> None:
    stack = skiff_stack(
        {
            "stuck": endpoint_hcl(
                "stuck", "tests/workers/runpod_blocking.py", scaling={"min_workers": 1, "max_workers": 1}
            ),
            "echo": endpoint_hcl(
                "echo", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1}
            ),
        }
    )
    stack.wait_ready_workers("stuck", 1)
    stack.wait_ready_workers("echo", 1)
    with stack.client() as client:
        # Execution timeout: TIMED_OUT at once; the worker ignores job-stop, so it is killed and
        # replaced, and the next job runs on the replacement.
        job = client.post("/v2/stuck/run", json={"input": {"sleep": 600}, "policy": {"executionTimeout": 1000}})
        timed_out = wait_final(client, "stuck", job.json()["id"])
        assert timed_out["status"] == "TIMED_OUT"
        stuck_worker = timed_out["workerId"]
        after = client.post("/v2/stuck/runsync", json={"input": {"sleep": 0}}).json()
        assert after["status"] == "COMPLETED" and after["workerId"] != stuck_worker

        # A worker that stops pinging (SIGSTOP) is replaced; its job is re-delivered.
        echo_worker = _endpoint(_status(client), "echo")["workers"][0]["id"]
        pids = _pids_of(stack, echo_worker)
        assert pids, f"no process found for worker {echo_worker}"
        held = client.post("/v2/echo/run", json={"input": {"sleep": 1, "held": True}}).json()["id"]
        eventually(
            lambda: client.get(f"/v2/echo/status/{held}").json()["status"] == "IN_PROGRESS",
            timeout=20,
            what="job start",
        )
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            body = wait_final(client, "echo", held, timeout=60)
        finally:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert body["status"] == "COMPLETED" and body["workerId"] != echo_worker and body["retries"] == 1
        eventually(
            lambda: echo_worker not in {w["id"] for w in _endpoint(_status(client), "echo")["workers"]},
            timeout=30,
            what="stop",
        )

        # refresh_worker: the worker exits after the job and a fresh one takes the next.
        refreshed = client.post("/v2/echo/runsync", json={"input": {"refresh": True}}).json()
        assert refreshed["status"] == "COMPLETED"
        next_job = client.post("/v2/echo/runsync", json={"input": {"n": 1}}).json()
        assert next_job["status"] == "COMPLETED" and next_job["workerId"] != refreshed["workerId"]


def _pids_of(stack: SkiffProcess, worker_id: str) -> list[int]:
    """Processes whose environment says RUNPOD_POD_ID=<worker_id> (the worker and its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"RUNPOD_POD_ID={worker_id}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found
