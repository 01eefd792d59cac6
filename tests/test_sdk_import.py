"""The SDK must work in a slim worker image: only httpx, pydantic and the standard library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SERVER_ONLY = ["fastapi", "starlette", "uvicorn", "boto3", "botocore", "redis", "nomad", "consul", "runpod", "aiohttp"]


def _run(code: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO)}
    )


def test_importing_the_sdk_pulls_in_no_server_dependency() -> None:
    code = (
        "import json, sys\n"
        "import skiff, skiff.serverless, skiff.sdk.client, skiff.sdk.worker, skiff.sdk.local\n"
        "skiff.Endpoint, skiff.AsyncEndpoint, skiff.serverless.start\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_ONLY!r})))\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_sdk_works_with_server_packages_unavailable(tmp_path: Path) -> None:
    # Block every server-side package as if it were not installed, then use the SDK for real:
    # a local test job through skiff.serverless, and a client object.
    (tmp_path / "test_input.json").write_text('{"input": {"x": 2}}')
    code = (
        "import importlib.abc, sys\n"
        f"BLOCKED = {SERVER_ONLY!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "        return None\n"
        "sys.meta_path.insert(0, Block())\n"
        "import skiff\n"
        "skiff.Endpoint('echo', base_url='http://127.0.0.1:9', api_key='k').close()\n"
        "skiff.serverless.start({'handler': lambda job: job['input']['x'] * 21})\n"
    )
    done = _run(code, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Job result: {"output": 42}' in done.stdout
