"""Logs that follow a job: the X-Request-ID a client sends comes back, reaches the worker and tags
the Skiff SDK's lines about the job; each status change is one JSON line in the gateway's log;
`skiff logs` filters by job and worker, under `skiff up` and against Nomad's allocation logs API
(the Nomad double serving raw_exec tasks)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from skiff_core.config import Settings
from skiff_core.nomad.client import NomadClient
from skiff_core.nomad.render import RenderOptions
from skiff_core.orchestrator.nomad import NomadOrchestrator
from skiff_core.spec import EndpointSpec
from tests.support.doubles.nomad import NomadDouble
from tests.support.stack import REPO, SKIFF, SkiffProcess, endpoint_hcl
from tests.support.wait import eventually, wait_status

ECHO = "examples/workers/echo.py"


def transitions(output: str, job_id: str) -> list[dict[str, object]]:
    lines = []
    for raw in output.splitlines():
        start = raw.find('{"event":"job"')
        if start >= 0:
            line = json.loads(raw[start:])
            if line["job_id"] == job_id:
                lines.append(line)
    return lines


@pytest.mark.timeout(480)  # a cold `skiff up` and its worker on a busy machine
def test_the_request_id_follows_the_job_into_the_gateways_and_the_workers_logs(
    skiff_stack: Callable[..., SkiffProcess],
) -> None:
    stack = skiff_stack({"echo": endpoint_hcl("echo", ECHO)}, {"SKIFF_LOG_LEVEL": "INFO"}, timeout=120)
    with stack.client(timeout=60) as client:
        response = client.post("/v2/echo/run", json={"input": {"n": 1}}, headers={"X-Request-ID": "req-42.abc"})
        assert response.headers["x-request-id"] == "req-42.abc"
        job = response.json()["id"]
        done = wait_status(client, "echo", job, {"COMPLETED"}, timeout=120)
        # Made up when absent, or when the header is not a sane token.
        made = client.post("/v2/echo/runsync", json={"input": 2}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", made)
        odd = client.post("/v2/echo/runsync", json={"input": 3}, headers={"X-Request-ID": "a b\tc"})
        assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])

    worker = done["workerId"]
    eventually(lambda: len(transitions(stack.output(), job)) >= 3, timeout=10, what="3 transition lines")
    lines = transitions(stack.output(), job)
    assert [line["status"] for line in lines] == ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]
    assert all(line["endpoint"] == "echo" and line["request_id"] == "req-42.abc" for line in lines)
    assert lines[1]["worker_id"] == lines[2]["worker_id"] == worker and lines[2]["retries"] == 0

    # The worker's own lines about the job carry the request id.
    worker_log = (stack.state_dir / "logs" / "echo" / f"{worker}.log").read_text()
    about_job = [json.loads(raw) for raw in worker_log.splitlines() if f'"requestId": "{job}"' in raw]
    assert about_job and all(line["xRequestId"] == "req-42.abc" for line in about_job)

    def skiff_logs(*args: str) -> str:
        out = subprocess.run(
            [SKIFF, "logs", "echo", "--state-dir", str(stack.state_dir), *args],
            cwd=REPO,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    only_job = skiff_logs("--job", job).splitlines()
    assert only_job and all(job in line for line in only_job)
    assert skiff_logs("--worker", worker[:10]).count(f"[{worker}]") >= 2
    assert skiff_logs("--worker", "echo-nobody") == ""


WORKER = (
    "import sys, time\n"
    "print('hello on stdout', flush=True)\n"
    "print('hello on stderr', file=sys.stderr, flush=True)\n"
    "time.sleep(1.5)\n"
    "print('later on stdout', flush=True)\n"
    "time.sleep(60)\n"
)


@pytest.mark.timeout(480)  # a cold `skiff up` and its worker on a busy machine
def test_skiff_logs_reads_nomads_allocation_logs_stdout_and_stderr_and_follows(tmp_path: Path) -> None:
    spec = EndpointSpec(name="talk", command=[sys.executable, "-c", WORKER], scaling={"max_workers": 2})
    with NomadDouble(run_tasks=True) as nomad:

        async def launch() -> list[str]:
            client = NomadClient(nomad.address, retries=1, backoff_s=0.05)
            orch = NomadOrchestrator(
                Settings(nomad_addr=nomad.address),
                client=client,
                worker_key=lambda _e: "skw_test",
                render_options=RenderOptions(driver="raw_exec"),
            )
            try:
                await orch.apply(spec)
                await orch.scale("talk", 1)
                return [w.id for w in await orch.workers("talk")]
            finally:
                await orch.close()

        (alloc,) = asyncio.run(launch())
        env = {**os.environ, "SKIFF_ORCHESTRATOR": "nomad", "SKIFF_NOMAD_ADDR": nomad.address}
        eventually(lambda: "later" in nomad.log_text(alloc, "stdout"), timeout=30, what="the task's output")

        out = subprocess.run(
            [SKIFF, "logs", "talk"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert out.returncode == 0, out.stderr
        assert f"[{alloc[:8]} stdout] hello on stdout" in out.stdout
        assert f"[{alloc[:8]} stdout] later on stdout" in out.stdout
        assert f"[{alloc[:8]} stderr] hello on stderr" in out.stdout
        none = subprocess.run(
            [SKIFF, "logs", "talk", "--worker", "ffffffff"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert none.returncode == 0 and none.stdout == ""

        # -f keeps the answer open: it has printed what is there and is still running.
        follow = subprocess.Popen(
            [SKIFF, "logs", "talk", "-f"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            assert follow.stdout is not None
            deadline = time.monotonic() + 30
            seen = ""
            while "later on stdout" not in seen and time.monotonic() < deadline:
                seen += follow.stdout.readline()
            assert "later on stdout" in seen
            assert follow.poll() is None
        finally:
            follow.terminate()
            follow.wait(10)

        # The API refuses as Nomad does.
        base = f"{nomad.address}/v1/client/fs/logs"
        assert httpx.get(f"{base}/{alloc}?type=stdout").text == "must provide task name"
        assert httpx.get(f"{base}/{alloc}?task=worker").status_code == 400
        missing = httpx.get(f"{base}/nope?task=worker&type=stdout")
        assert missing.status_code == 404 and missing.text == 'Unknown allocation "nope"'
        framed = httpx.get(f"{base}/{alloc}?task=worker&type=stderr").json()
        assert framed["File"] == "alloc/logs/worker.stderr.0" and "Data" in framed
