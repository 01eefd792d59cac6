"""The SDK must work in a slim worker image: httpx, pydantic, aiohttp and the standard library.

`import skiff` (client and worker API) pulls in no server package and not aiohttp either; the
worker runtime imports aiohttp only when start() begins serving jobs from a gateway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVER_ONLY = ["fastapi", "starlette", "uvicorn", "boto3", "botocore", "redis", "nomad", "consul", "runpod"]
# aiohttp is a client library the worker loop needs; it still must not load on `import skiff`.
NOT_ON_IMPORT = [*SERVER_ONLY, "aiohttp"]

BLOCKER = (
    "import importlib.abc, sys\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in BLOCKED:\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
    "        return None\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _run(code: str, cwd: Path = REPO, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(REPO), **(env or {})},
    )


def test_importing_the_sdk_pulls_in_no_server_dependency() -> None:
    code = (
        "import json, sys\n"
        "import skiff, skiff.serverless, skiff.client, skiff.worker.serve, skiff.worker.local\n"
        "skiff.Endpoint, skiff.AsyncEndpoint, skiff.serverless.start\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {NOT_ON_IMPORT!r})))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_sdk_works_with_server_packages_unavailable(tmp_path: Path) -> None:
    # Block every server-side package (and aiohttp) as if it were not installed, then use the SDK
    # for real: a local test job through skiff.serverless, and a client object.
    (tmp_path / "test_input.json").write_text('{"input": {"x": 2}}')
    code = (
        f"BLOCKED = {NOT_ON_IMPORT!r}\n" + BLOCKER + "import skiff\n"
        "skiff.Endpoint('echo', base_url='http://127.0.0.1:9', api_key='k').close()\n"
        "skiff.serverless.start({'handler': lambda job: job['input']['x'] * 21})\n"
    )
    done = _run(code, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Job result: {"output": 42}' in done.stdout


class _OneJobGateway:
    """Hands out one job on job-take, records job-done bodies; everything else is 204."""

    def __init__(self) -> None:
        self.done: list[Any] = []
        self.got_done = threading.Event()
        self._given = False
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                if "/job-take/" in self.path and not gateway._given:
                    gateway._given = True
                    self._answer(200, json.dumps({"id": "job-1", "input": {"x": 2}}).encode())
                else:
                    self._answer(204, b"")

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/job-done/" in self.path:
                    gateway.done.append(json.loads(raw))
                    gateway.got_done.set()
                self._answer(200, b"{}")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/v2/ep"

    def env(self) -> dict[str, str]:
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.base}/job-take/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.base}/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
            "RUNPOD_AI_API_KEY": "worker-key",
            "RUNPOD_POD_ID": "w1",
            "PYTHONUNBUFFERED": "1",
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_worker_serves_jobs_with_only_client_packages(tmp_path: Path) -> None:
    # The worker loop against a gateway, with every server package blocked: it takes the job,
    # posts the result, and exits cleanly on SIGTERM.
    gateway = _OneJobGateway()
    code = (
        f"BLOCKED = {SERVER_ONLY!r}\n" + BLOCKER + "import skiff\n"
        "skiff.serverless.start({'handler': lambda job: job['input']['x'] * 21})\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": os.environ.get("PATH", ""), **gateway.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert gateway.got_done.wait(30), "the worker never posted a result"
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gateway.close()
    assert gateway.done == [{"output": 42}]
    assert proc.returncode == 0, output
    assert "Traceback" not in output


def test_worker_without_aiohttp_says_what_is_missing(tmp_path: Path) -> None:
    gateway = _OneJobGateway()
    code = (
        f"BLOCKED = {['aiohttp']!r}\n" + BLOCKER + "import skiff\n"
        "skiff.serverless.start({'handler': lambda job: job['input']})\n"
    )
    try:
        done = _run(code, cwd=tmp_path, env=gateway.env())
    finally:
        gateway.close()
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "needs aiohttp" in output
    assert "Traceback" not in output
    assert gateway.done == []
