"""A project from `skiff init` served as written: `skiff up` on its endpoints directory, started in
the project, answers a request (through the official runpod client for queue endpoints)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import runpod

from tests.support.stack import SKIFF, SkiffProcess


@pytest.fixture
def runpod_base() -> Iterator[None]:
    previous = runpod.endpoint_url_base
    yield
    runpod.endpoint_url_base = previous


def _init(tmp_path: Path, name: str, sdk: str, kind: str) -> Path:
    subprocess.run([SKIFF, "init", name, "--sdk", sdk, "--type", kind], cwd=tmp_path, check=True, timeout=60)
    return tmp_path / name


@pytest.mark.parametrize("sdk", ["skiff", "runpod"])
def test_queue_scaffold_serves_the_runpod_client(tmp_path: Path, sdk: str, runpod_base: None) -> None:
    project = _init(tmp_path, f"hello-{sdk}", sdk, "queue")
    stack = SkiffProcess(project / "endpoints", tmp_path / "state", cwd=project).start()
    try:
        runpod.endpoint_url_base = f"{stack.url}/v2"
        endpoint = runpod.Endpoint(f"hello-{sdk}", api_key=stack.key)
        assert endpoint.run_sync({"input": {"name": "you"}}, timeout=90) == {"greeting": "Hello, you!"}
    finally:
        stack.stop()


@pytest.mark.parametrize("sdk", ["skiff", "runpod"])
def test_load_balancer_scaffold_serves_a_request(tmp_path: Path, sdk: str) -> None:
    project = _init(tmp_path, f"web-{sdk}", sdk, "load_balancer")
    # Tests touch loopback only: the worker would listen on every interface otherwise.
    stack = SkiffProcess(project / "endpoints", tmp_path / "state", {"HOST": "127.0.0.1"}, cwd=project).start()
    try:
        with stack.client(timeout=90) as client:
            answer = client.post(f"/lb/web-{sdk}/hello", json={"name": "you"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"greeting": "Hello, you!"}
    except httpx.HTTPError as exc:
        raise AssertionError(f"{exc}\n{stack.output()}") from exc
    finally:
        stack.stop()
