"""The local orchestrator: crashed workers come back with backoff; `skiff logs` shows their output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.stack import REPO, SkiffProcess, endpoint_hcl

SKIFF = str(Path(sys.executable).parent / "skiff")


def test_crashing_worker_is_restarted_with_backoff(skiff_stack: Callable[..., SkiffProcess]) -> None:
    crash = (
        'endpoint "crash" {\n  type    = "queue"\n'
        '  command = ["python", "-c", "import sys; print(\'dying\'); sys.exit(3)"]\n'
        "  scaling {\n    min_workers = 1\n  }\n}\n"
    )
    stack = skiff_stack({"crash": crash})
    logs = stack.state_dir / "logs" / "crash"
    time.sleep(4)
    launches = sorted(logs.glob("*.log"), key=lambda p: p.stat().st_mtime)
    # Backoff 0.5 s, 1 s, 2 s, ...: a handful of launches in 4 s, not hundreds.
    assert 2 <= len(launches) <= 6, [p.name for p in launches]
    assert all("dying" in p.read_text() for p in launches)


def test_skiff_logs_prints_worker_output(skiff_stack: Callable[..., SkiffProcess]) -> None:
    stack = skiff_stack({"e": endpoint_hcl("e", "tests/workers/runpod_async_echo.py", scaling={"min_workers": 1})})
    stack.wait_ready_workers("e")
    with stack.client() as client:
        job = client.post("/v2/e/runsync", json={"input": {"logged": 1}}).json()
    assert job["status"] == "COMPLETED"
    out = subprocess.run(
        [SKIFF, "logs", "e", "--state-dir", str(stack.state_dir)], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert job["id"] in out.stdout and f"[{job['workerId']}]" in out.stdout
    missing = subprocess.run(
        [SKIFF, "logs", "nope", "--state-dir", str(stack.state_dir)], cwd=REPO, capture_output=True, text=True
    )
    assert missing.returncode == 1 and "no logs for endpoint 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_skiff_up_refuses_bad_endpoint_files(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "bad.hcl").write_text('endpoint "bad" {\n  type = "queue"\n  scaling {\n    max_workers = 0\n  }\n}\n')
    out = subprocess.run(
        [SKIFF, "up", "--endpoints", str(endpoints), "--state-dir", str(tmp_path / "s")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 1
    assert "bad.hcl" in out.stderr and "max_workers" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    missing = subprocess.run(
        [SKIFF, "up", "--endpoints", str(tmp_path / "nope")], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_a_worker_never_ready_is_replaced_after_the_startup_timeout(skiff_stack: Callable[..., SkiffProcess]) -> None:
    hang = (
        'endpoint "hang" {\n  type    = "queue"\n'
        '  command = ["python", "-c", "import time; print(\'loading forever\', flush=True); time.sleep(600)"]\n'
        "  scaling {\n    min_workers = 1\n    max_workers = 1\n  }\n}\n"
    )
    echo = endpoint_hcl("echo", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})
    stack = skiff_stack({"hang": hang, "echo": echo}, extra_env={"SKIFF_WORKER_STARTUP_TIMEOUT_S": "2"})
    stack.wait_ready_workers("echo")
    with stack.client() as client:
        ready_echo = {w["id"] for w in _workers(client, "echo")}
        job = client.post("/v2/hang/run", json={"input": {"n": 1}}).json()
        deadline = time.monotonic() + 30
        seen: set[str] = set()
        while time.monotonic() < deadline and len(seen) < 3:
            seen |= {w["id"] for w in _workers(client, "hang")}
            time.sleep(0.2)
        assert len(seen) >= 3, f"a worker that never became ready was not replaced: {seen}"
        assert {w["id"] for w in _workers(client, "echo")} == ready_echo, "a ready worker was replaced"
        # The job waits for a worker that works; it is neither lost nor failed.
        assert client.get(f"/v2/hang/status/{job['id']}").json()["status"] == "IN_QUEUE"
    logs = sorted((stack.state_dir / "logs" / "hang").glob("*.log"))
    assert len(logs) >= 3 and all("loading forever" in p.read_text() for p in logs)
    assert "not ready 2s after launch" in stack.output()


def _workers(client: httpx.Client, endpoint: str) -> list[dict[str, Any]]:
    doc = client.get("/v1/status").json()
    workers = next(e for e in doc["endpoints"] if e["name"] == endpoint)["workers"]
    return [w for w in workers if w["state"] != "stopping"]


def test_sigusr1_and_sigusr2_print_threads_and_tasks(skiff_stack: Callable[..., SkiffProcess]) -> None:
    stack = skiff_stack({"e": endpoint_hcl("e", "tests/workers/skiff_async_echo.py")})
    assert stack.proc is not None
    stack.proc.send_signal(signal.SIGUSR1)
    # faulthandler writes thread by thread: wait for the main thread's frames in Skiff's own code,
    # not just the first heading.
    deadline = time.monotonic() + 10
    while "skiff_cli" not in stack.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "most recent call first" in stack.output() and "skiff_cli" in stack.output()
    stack.proc.send_signal(signal.SIGUSR2)  # every asyncio task's stack
    deadline = time.monotonic() + 10
    while "Stack for <Task" not in stack.output() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "asyncio task(s)" in stack.output() and "Stack for <Task" in stack.output()
    with stack.client() as client:
        assert client.get("/v2/e/health").status_code == 200
    assert stack.proc.poll() is None
