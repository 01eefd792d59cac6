"""End-to-end fixtures: one `skiff up` per worker flavour for the session (workers are slow to start)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import SkiffProcess, endpoint_hcl

WORKERS = {
    "skiff": "tests/workers/skiff_async_echo.py",  # written with the Skiff SDK
    "runpod": "tests/workers/runpod_async_echo.py",  # written with the official runpod SDK
}


@pytest.fixture(scope="session", params=sorted(WORKERS))
def echo_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkiffProcess]:
    """One `skiff up` per worker flavour for the whole session: an echo endpoint (1 worker) served
    by the Skiff or the runpod SDK, a stream endpoint, and a second echo endpoint to check that
    keys and jobs do not cross endpoints."""
    root = tmp_path_factory.mktemp(f"echo-{request.param}")
    endpoints = root / "endpoints"
    endpoints.mkdir()
    script = WORKERS[request.param]
    (endpoints / "echo.hcl").write_text(
        endpoint_hcl("echo", script, max_retries=2, scaling={"min_workers": 1, "max_workers": 1})
    )
    (endpoints / "other.hcl").write_text(endpoint_hcl("other", WORKERS["runpod"]))
    (endpoints / "stream.hcl").write_text(
        endpoint_hcl("stream", "examples/workers/stream.py", scaling={"min_workers": 1})
    )
    stack = SkiffProcess(endpoints, root / "state").start()
    stack.flavour = request.param  # type: ignore[attr-defined]
    try:
        stack.wait_ready_workers("echo")
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"
