"""`skiff init` as a user runs it: the console script in a subprocess, then what it wrote: the
handler's local test (test_input.json), the Dockerfile under hadolint, the endpoint file under
`skiff validate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.images import hadolint

REPO = Path(__file__).resolve().parents[2]
SKIFF = REPO / ".venv" / "bin" / "skiff"
FILES = ["Dockerfile", "README.md", "endpoints/{name}.hcl", "handler.py", "test_input.json"]
COMBOS = [(sdk, kind) for sdk in ("skiff", "runpod") for kind in ("queue", "load_balancer")]


def _skiff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not SKIFF.is_file():
        pytest.fail(f"the `skiff` console script is missing at {SKIFF}: run scripts/setup.sh test")
    result = subprocess.run([str(SKIFF), *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _no_gateway_env() -> dict[str, str]:
    # A developer's shell: no worker protocol variables, no PORT.
    return {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_") and k not in ("PORT", "PORT_HEALTH")}


@pytest.mark.parametrize(("sdk", "kind"), COMBOS)
def test_init_writes_a_project_whose_local_test_passes(tmp_path: Path, sdk: str, kind: str) -> None:
    name = f"hello-{sdk}"
    result = _skiff("init", name, "--sdk", sdk, "--type", kind, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    project = tmp_path / name
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert written == sorted(f.format(name=name) for f in FILES)

    # Step 2 of the README: `python handler.py` runs test_input.json once and exits 0.
    local = subprocess.run(
        [sys.executable, "handler.py"], cwd=project, env=_no_gateway_env(), capture_output=True, text=True, timeout=120
    )
    assert local.returncode == 0, local.stdout + local.stderr
    assert "Hello, Skiff!" in local.stdout + local.stderr

    lint = hadolint([project / "Dockerfile"])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    dockerfile = (project / "Dockerfile").read_text()
    assert "FROM ${WORKER_BASE}" in dockerfile and "ARG WORKER_BASE=ghcr.io/skiff-dev/skiff-worker:" in dockerfile
    assert ("runpod==" in dockerfile) is (sdk == "runpod" and kind == "queue")

    valid = _skiff("validate", "endpoints", cwd=project)
    assert valid.returncode == 0, valid.stderr
    assert kind in valid.stdout


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    project = tmp_path / "mine"
    project.mkdir()
    (project / "handler.py").write_text("# my own work\n")
    result = _skiff("init", "mine", cwd=tmp_path)
    assert result.returncode == 1
    assert "not overwriting" in result.stderr and "handler.py" in result.stderr
    assert (project / "handler.py").read_text() == "# my own work\n"
    assert sorted(p.name for p in project.iterdir()) == ["handler.py"]


def test_init_rejects_a_bad_name(tmp_path: Path) -> None:
    result = _skiff("init", "My_Worker", cwd=tmp_path)
    assert result.returncode == 2
    assert "not an endpoint name" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_init_dir_option(tmp_path: Path) -> None:
    result = _skiff("init", "echo2", "--dir", "elsewhere", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "elsewhere" / "endpoints" / "echo2.hcl").is_file()


def test_the_commented_options_of_the_scaffold_are_valid_when_uncommented(tmp_path: Path) -> None:
    assert _skiff("init", "demo", cwd=tmp_path).returncode == 0
    path = tmp_path / "demo" / "endpoints" / "demo.hcl"
    lines = path.read_text().splitlines()
    # Uncomment the volume block, secrets, concurrency and the gpu block: every `  # ` line whose
    # rest is HCL rather than prose.
    hcl = ("volume ", "source ", "}", "secrets ", "concurrency ", "gpu ", "count ", "models ")
    out = [line.replace("# ", "", 1) if line.lstrip("# ").startswith(hcl) else line for line in lines]
    path.write_text("\n".join(out) + "\n")
    result = _skiff("validate", "endpoints", cwd=tmp_path / "demo")
    assert result.returncode == 0, result.stderr + path.read_text()
    spec = path.read_text()
    assert 'volume "models" {' in spec and "concurrency = 1" in spec and "gpu {" in spec
