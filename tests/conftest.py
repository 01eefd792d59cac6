"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.stack import SkiffProcess


@pytest.fixture
def skiff_stack(tmp_path: Path) -> Iterator[Callable[..., SkiffProcess]]:
    """Factory: write endpoint files (name -> HCL text) and start `skiff up` on them."""
    started: list[SkiffProcess] = []

    def start(files: dict[str, str], extra_env: dict[str, str] | None = None) -> SkiffProcess:
        endpoints = tmp_path / f"endpoints{len(started)}"
        endpoints.mkdir()
        for name, text in files.items():
            (endpoints / f"{name}.hcl").write_text(text)
        stack = SkiffProcess(endpoints, tmp_path / f"state{len(started)}", extra_env)
        started.append(stack)
        return stack.start()

    yield start
    for stack in started:
        try:
            stack.stop()
        except Exception:
            stack.kill9()
