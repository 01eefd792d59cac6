"""`pip install ./sdk` into a fresh virtualenv: what a worker image gets.

It must install only httpx, sniffio, aiohttp and what those need (no server package), and a
worker run from that venv, outside the repository, must serve a job. pip fetches the
dependencies from the package index, so this test needs it reachable.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_sdk_import import _OneJobGateway

REPO = Path(__file__).resolve().parents[2]
DIRECT = {"httpx", "sniffio", "aiohttp"}
SERVER_DISTS = {
    "skiff-core",
    "skiff-gateway",
    "skiff-controller",
    "skiff-cli",
    "fastapi",
    "starlette",
    "uvicorn",
    "boto3",
    "botocore",
    "redis",
    "python-nomad",
    "python-consul",
    "typer",
    "rich",
    "pydantic",
    "runpod",
}

# Run by the venv's python: skiff's direct requirements, every installed distribution, and those
# that skiff's requirements do not account for (a requirement behind an extra does not count).
INSPECT = r"""
import json, re
from importlib import metadata

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def needs(dist):
    out = set()
    for req in metadata.requires(dist) or []:
        name, _, marker = req.partition(";")
        if "extra ==" in marker or "extra==" in marker:
            continue
        out.add(norm(re.split(r"[\s\[<>=!~(]", name.strip(), maxsplit=1)[0]))
    return out

direct = needs("skiff")
closure, todo = set(), list(direct)
while todo:
    name = todo.pop()
    if name in closure:
        continue
    closure.add(name)
    try:
        todo.extend(needs(name))
    except metadata.PackageNotFoundError:
        pass
installed = {norm(d.metadata["Name"]) for d in metadata.distributions()}
print(json.dumps({"direct": sorted(direct), "installed": sorted(installed),
                  "unaccounted": sorted(installed - closure - {"skiff", "pip", "setuptools", "wheel"})}))
"""

WORKER = (
    "import skiff\n"
    "print('skiff from', skiff.__file__, flush=True)\n"
    "skiff.serverless.start({'handler': lambda job: job['input']['x'] * 21})\n"
)


@pytest.mark.timeout(600)
def test_pip_install_sdk_gets_only_client_packages_and_serves_a_job(tmp_path: Path) -> None:
    # A copy, so that the build leaves nothing (build/, *.egg-info) in the repository.
    source = tmp_path / "sdk"
    shutil.copytree(REPO / "sdk", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert install.returncode == 0, install.stdout + install.stderr

    inspected = subprocess.run([str(python), "-c", INSPECT], env=env, capture_output=True, text=True, timeout=60)
    assert inspected.returncode == 0, inspected.stderr
    found = json.loads(inspected.stdout)
    assert set(found["direct"]) == DIRECT
    assert found["unaccounted"] == [], found["installed"]
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"], env=env, capture_output=True, text=True, timeout=60
    )
    names = {entry["name"].lower().replace("_", "-") for entry in json.loads(listed.stdout)}
    assert names & SERVER_DISTS == set()
    assert "skiff" in names

    # A real worker from that venv, run outside the repository, against a gateway double.
    gateway = _OneJobGateway()
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.Popen(
        [str(python), "-c", WORKER],
        cwd=work,
        env={"PATH": os.environ.get("PATH", ""), **gateway.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        got = gateway.got_done.wait(60)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        gateway.close()
    assert got, "the worker never posted a result"
    assert gateway.done == [{"output": 42}]
    assert proc.returncode == 0, output
    assert f"skiff from {venv}" in output, output
    assert "Traceback" not in output
