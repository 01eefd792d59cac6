"""Fixtures shared by every tier: `skiff up` on given endpoint files, moto and a private redis-server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.services import MotoServer, RedisServer, moto_server, redis_server
from tests.support.stack import SkiffProcess


@pytest.fixture
def skiff_stack(tmp_path: Path) -> Iterator[Callable[..., SkiffProcess]]:
    """Factory: write endpoint files (name -> HCL text) and start `skiff up` on them."""
    started: list[SkiffProcess] = []

    def start(files: dict[str, str], extra_env: dict[str, str] | None = None, timeout: float = 30.0) -> SkiffProcess:
        endpoints = tmp_path / f"endpoints{len(started)}"
        endpoints.mkdir()
        for name, text in files.items():
            (endpoints / f"{name}.hcl").write_text(text)
        stack = SkiffProcess(endpoints, tmp_path / f"state{len(started)}", extra_env)
        started.append(stack)
        return stack.start(timeout)

    yield start
    for stack in started:
        try:
            stack.stop()
        except Exception:
            stack.kill9()


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """moto's server (SQS, S3, ...) on 127.0.0.1 for one test module."""
    with moto_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on 127.0.0.1 for one test module."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
