"""The package boundaries, read from the source: who may import whom.

    skiff (sdk)  <-  skiff_core  <-  skiff_gateway      <-  skiff_cli
                                 <-  skiff_controller   <-

The SDK imports nothing server-side; the gateway and the controller never import each other (they
meet through the job store, the queue and small protocols owned by their callers); only the CLI
composes both. Every import statement counts, inside functions and TYPE_CHECKING blocks too.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MEMBERS = {
    "sdk": "skiff",
    "core": "skiff_core",
    "gateway": "skiff_gateway",
    "controller": "skiff_controller",
    "cli": "skiff_cli",
}
OURS = set(MEMBERS.values())
SERVER_ONLY = {
    "fastapi", "starlette", "uvicorn", "boto3", "botocore", "redis", "nomad", "consul",
    "typer", "rich", "pydantic", "pydantic_settings", "hcl2", "orjson", "filelock", "watchfiles",
}  # fmt: skip
# package -> the packages of ours it may import (itself always)
ALLOWED = {
    "skiff": set(),
    "skiff_core": {"skiff"},
    "skiff_gateway": {"skiff", "skiff_core"},
    "skiff_controller": {"skiff", "skiff_core"},
    "skiff_cli": {"skiff", "skiff_core", "skiff_gateway", "skiff_controller"},
}


def imports_of(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level module) of every absolute import in the source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module.split(".")[0]


def violations(package: str, source: str) -> list[str]:
    found = []
    for line, top in imports_of(source):
        if top in OURS and top != package and top not in ALLOWED[package]:
            found.append(f"line {line}: {package} imports {top}")
        elif package == "skiff" and top in SERVER_ONLY:
            found.append(f"line {line}: the SDK imports the server-side package {top}")
    return found


def modules() -> Iterator[tuple[str, Path]]:
    for member, package in MEMBERS.items():
        for path in sorted((REPO / member / "src" / package).rglob("*.py")):
            yield package, path


def test_every_member_installs_only_its_own_distinct_package() -> None:
    for member, package in MEMBERS.items():
        assert [p.name for p in (REPO / member / "src").iterdir() if not p.name.endswith(".egg-info")] == [package]
        project = tomllib.loads((REPO / member / "pyproject.toml").read_text())
        assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


@pytest.mark.parametrize("package", sorted(OURS))
def test_imports_respect_the_layers(package: str) -> None:
    problems = [
        f"{path.relative_to(REPO)} {problem}"
        for owner, path in modules()
        if owner == package
        for problem in violations(package, path.read_text())
    ]
    assert problems == []


@pytest.mark.parametrize(
    ("package", "line"),
    [
        ("skiff_gateway", "from skiff_controller.loop import Controller"),
        ("skiff_gateway", "import skiff_controller"),
        ("skiff_controller", "from skiff_gateway.balancer import Balancer"),
        ("skiff_core", "from skiff_gateway import app"),
        ("skiff", "from skiff_core.jobs import JobRecord"),
        ("skiff", "import fastapi"),
    ],
)
def test_a_forbidden_import_is_caught_wherever_it_hides(package: str, line: str) -> None:
    hidden = f"from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    {line}\ndef f():\n    {line}\n"
    assert len(violations(package, hidden)) == 2


def test_the_allowed_direction_is_not_flagged() -> None:
    assert violations("skiff_cli", "from skiff_gateway.service import GatewayService") == []
    assert violations("skiff_gateway", "from skiff_core.lbload import LoadReport\nimport skiff") == []
