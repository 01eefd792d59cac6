"""Compatibility promise 1, in JavaScript: Runpod's JavaScript SDK (runpod-sdk, pinned in
tests/js/package.json, installed by scripts/setup.sh test) drives Skiff with only `baseUrl`
changed: run, runSync on a job longer than its wait, status, statusSync, stream, cancel, health
and purgeQueue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.stack import REPO, SkiffProcess

JS = REPO / "tests" / "js"


def drive(stack: SkiffProcess, scenario: str, tmp_path: Path) -> tuple[Any, list[str]]:
    node = shutil.which("node")
    assert node is not None, "node (Node.js 20 or newer) is not on PATH: the JavaScript client tests need it"
    assert (JS / "node_modules" / "runpod-sdk").is_dir(), (
        "tests/js/node_modules/runpod-sdk is missing: run `bash scripts/setup.sh test` (it runs npm ci there)"
    )
    result_file = tmp_path / f"{scenario}.json"
    env = {**os.environ, "SKIFF_URL": stack.url, "SKIFF_KEY": stack.key, "RESULT_FILE": str(result_file)}
    done = subprocess.run(
        [node, "drive.mjs", scenario], cwd=JS, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"node drive.mjs {scenario} failed:\n{done.stdout}\n{done.stderr}"
    body = json.loads(result_file.read_text())
    return body["result"], body["requests"]


def test_run_and_status(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, requests = drive(echo_stack, "run_status", tmp_path)
    assert result["status"] == "COMPLETED" and result["output"] == {"question": "life"}
    assert result["completed"] is True and result["succeeded"] is True
    assert requests[0] == "POST /v2/echo/run"
    assert requests[1].startswith("GET /v2/echo/status/")


def test_run_sync_on_a_job_longer_than_its_wait(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, requests = drive(echo_stack, "run_sync_long", tmp_path)
    assert result["status"] == "COMPLETED", result
    assert result["output"] == {"sleep": 4.5, "n": 7}
    assert result["completed"] is True and result["succeeded"] is True
    assert requests[0] == "POST /v2/echo/runsync?wait=3000"
    # The job outlived the first wait, so the SDK carried on with /status-sync.
    assert any(r.startswith(f"GET /v2/echo/status-sync/{result['id']}?wait=") for r in requests[1:]), requests


def test_status_sync_waits_for_the_end(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, requests = drive(echo_stack, "status_sync", tmp_path)
    assert result["status"] == "COMPLETED" and result["output"] == {"sleep": 1.5, "n": 8}
    assert requests[1] == f"GET /v2/echo/status-sync/{result['id']}?wait=60000"
    assert len(requests) == 2  # one call held until the job ended


def test_stream(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, _ = drive(echo_stack, "stream", tmp_path)
    assert [item["output"] for item in result] == ["to", "be", "or", "not"]


def test_cancel(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, _ = drive(echo_stack, "cancel", tmp_path)
    assert result["cancelled"]["status"] == "CANCELLED"
    assert result["after"] == "CANCELLED"


def test_health_and_purge_queue(echo_stack: SkiffProcess, tmp_path: Path) -> None:
    result, _ = drive(echo_stack, "health_purge", tmp_path)
    health = result["health"]
    assert health["jobs"]["inQueue"] >= 2
    # Every key of runpod-sdk's HealthCheck type, and Runpod's unhealthy.
    assert {"idle", "initializing", "ready", "running", "throttled", "unhealthy"} <= set(health["workers"])
    assert health["workers"]["running"] == 1 and health["workers"]["ready"] >= 1, health
    assert health["workers"]["throttled"] == 0
    assert result["purged"] == {"removed": 2, "status": "completed"}
    assert result["statuses"] == ["CANCELLED", "CANCELLED"]


@pytest.fixture(autouse=True)
def _settle(echo_stack: SkiffProcess) -> None:
    """Each scenario starts with the echo worker ready (a cancel may have just replaced it)."""
    echo_stack.wait_ready_workers("echo")
