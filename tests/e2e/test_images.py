"""Skiff's images, linted, built and run: no Docker engine, no registry.

Every Dockerfile in the checkout passes hadolint (warnings fail). Then podman (runc, a private
configuration, storage under .skiff/images) builds, on a Debian bookworm base made locally with
mmdebstrap from the machine's own mirror (tests/support/images.py):
- the server image (root Dockerfile) and the worker base (sdk/Dockerfile, CPU);
- the worker base's CUDA variant, whose base (like nvidia/cuda) has no Python, so the Dockerfile's
  Python install step runs;
- the example worker (examples/workers/Dockerfile) FROM the CPU worker base.
A job then goes through real containers on loopback: the server image as `skiff gateway` (embedded
SQLite in the container, one queue endpoint mounted read-only) and the example worker with the
RUNPOD_* environment the platform gives a worker, reached over real HTTP with the API key.

A missing podman, runc, mmdebstrap or hadolint fails the test and names it (scripts/setup-images.sh
installs the first three, the dev dependencies the last). Built images and the base are reused by the
next run; SKIFF_IMAGES_DIR picks another storage (an empty one builds everything from nothing).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from skiff_core.endpoints import load_endpoints
from skiff_core.orchestrator.worker_env import worker_environment
from tests.support.images import (
    BARE_BASE,
    PYTHON_BASE,
    PYTHON_BASE_CONTAINERFILE,
    REPO,
    MissingTool,
    Podman,
    dockerfiles,
    ensure_bases,
    hadolint,
    hadolint_text,
)
from tests.support.services import free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.timeout(1500)

SERVER = "localhost/skiff:test"
WORKER_BASE = "localhost/skiff-worker:test"
WORKER_BASE_CUDA = "localhost/skiff-worker:test-cuda"
ECHO_WORKER = "localhost/skiff-echo-worker:test"
TEST_LABEL = "dev.skiff.test=images"
# One-off probes: no network, and no health timer (podman would ask systemd for one; there is none).
QUIET = ("--network=none", "--health-interval=disable")

# Installed by the server image, never by the worker base.
SERVER_SIDE = [
    "fastapi",
    "starlette",
    "uvicorn",
    "boto3",
    "botocore",
    "redis",
    "nomad",
    "consul",
    "typer",
    "rich",
    "pydantic",
    "skiff_core",
    "skiff_gateway",
    "skiff_controller",
    "skiff_cli",
]

ECHO_HCL = """\
endpoint "echo" {
  type    = "queue"
  image   = "localhost/skiff-echo-worker:test"
  command = ["python", "-u", "handler.py"]
}
"""


@dataclass
class Built:
    podman: Podman


def _podman_or_fail() -> Podman:
    try:
        return Podman.create()
    except MissingTool as exc:
        missing = str(exc)
    pytest.fail(missing, pytrace=False)


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """Every image built (cached layers and bases reused); timings and sizes printed at the end."""
    podman = _podman_or_fail()
    podman.remove_containers(TEST_LABEL)  # leftovers of a run that was killed
    # Untagged images that newer builds replaced: kept a day as build cache, then dropped.
    podman.run("image", "prune", "--force", "--filter", "until=24h", check=False)
    started = time.monotonic()
    missing = ""
    try:
        ensure_bases(podman)
    except MissingTool as exc:
        missing = str(exc)
    if missing:
        pytest.fail(missing, pytrace=False)
    podman.build(SERVER, context=REPO, dockerfile=REPO / "Dockerfile", build_args={"BASE": PYTHON_BASE})
    podman.build(WORKER_BASE, context=REPO, dockerfile=REPO / "sdk" / "Dockerfile", build_args={"BASE": PYTHON_BASE})
    # The CUDA variant: the same Dockerfile and build arguments as for nvidia/cuda, on a local base
    # that, like it, has no Python.
    podman.build(
        WORKER_BASE_CUDA,
        context=REPO,
        dockerfile=REPO / "sdk" / "Dockerfile",
        build_args={"BASE": BARE_BASE, "FLAVOR": "cuda"},
    )
    podman.build(ECHO_WORKER, context=REPO / "examples" / "workers", build_args={"WORKER_BASE": WORKER_BASE})
    total = time.monotonic() - started
    yield Built(podman)
    report = [f"{step.name}: {step.seconds:.1f}s" for step in podman.steps]
    report.append(f"all builds: {total:.1f}s")
    for ref in (BARE_BASE, PYTHON_BASE, SERVER, WORKER_BASE, WORKER_BASE_CUDA, ECHO_WORKER):
        report.append(f"{ref}: {podman.size_mb(ref):.0f} MB")
    (podman.home / "last-run.txt").write_text("\n".join(report) + "\n")
    print("\n[images] " + "\n[images] ".join(report))


@pytest.fixture
def containers(built: Built) -> Iterator[list[str]]:
    """Names of the containers a test starts; all removed however the test ends."""
    names: list[str] = []
    try:
        yield names
    finally:
        for name in names:
            built.podman.run("rm", "--force", "--time", "2", name, check=False)


def _run_detached(
    podman: Podman, names: list[str], name: str, image: str, options: list[str], command: list[str]
) -> None:
    """A container on the host's network (the test's loopback), removed by the `containers` fixture."""
    names.append(name)
    podman.run("run", "--detach", "--name", name, "--label", TEST_LABEL, "--network=host", *options, image, *command)


def _assert_running(podman: Podman, name: str) -> None:
    state = podman.run("inspect", "--format", "{{.State.Running}}", name, check=False).stdout.strip()
    assert state == "true", f"container {name} is not running\n" + _logs(podman, name)


def _logs(podman: Podman, name: str) -> str:
    out = podman.run("logs", name, check=False)
    return f"--- {name} ---\n{out.stdout[-3000:]}{out.stderr[-3000:]}"


def test_every_dockerfile_passes_hadolint() -> None:
    found = dockerfiles()
    relative = {str(p.relative_to(REPO)) for p in found}
    assert {"Dockerfile", "sdk/Dockerfile", "examples/workers/Dockerfile"} <= relative, relative
    try:
        result = hadolint(found)
        base = hadolint_text(PYTHON_BASE_CONTAINERFILE, "Containerfile.skiff-base")
    except MissingTool as exc:
        pytest.fail(str(exc), pytrace=False)
    assert result.returncode == 0, f"hadolint {' '.join(sorted(relative))}:\n{result.stdout}{result.stderr}"
    assert base.returncode == 0, f"hadolint (the local Python base):\n{base.stdout}{base.stderr}"


def test_images_run_as_non_root(built: Built) -> None:
    for image in (SERVER, WORKER_BASE, WORKER_BASE_CUDA, ECHO_WORKER):
        uid = built.podman.run("run", "--rm", *QUIET, "--entrypoint", "id", image, "-u").stdout.strip()
        assert uid == "10001", f"{image} runs as uid {uid}"


def test_worker_bases_hold_the_sdk_and_nothing_server_side(built: Built) -> None:
    lock = (REPO / "sdk" / "requirements.lock").read_text().splitlines()
    locked = {line.split("==")[0].lower() for line in lock if line and not line[0].isspace() and "==" in line}
    probe = (
        "import importlib.util, json, sys, skiff, skiff.serverless; "
        f"print(json.dumps({{'py': sys.version_info[:2], 'found': [m for m in {SERVER_SIDE!r} "
        "if importlib.util.find_spec(m)]}))"
    )
    for image, flavor in ((WORKER_BASE, "cpu"), (WORKER_BASE_CUDA, "cuda")):
        out = json.loads(built.podman.run("run", "--rm", *QUIET, image, "python", "-c", probe).stdout)
        assert out["found"] == [], f"{image} has server-side packages: {out['found']}"
        assert tuple(out["py"]) >= (3, 11)
        listed = built.podman.run("run", "--rm", *QUIET, image, "pip", "list", "--format", "json").stdout
        installed = {d["name"].lower().replace("_", "-") for d in json.loads(listed)}
        extra = installed - locked - {"skiff", "pip", "setuptools"}
        assert not extra, f"{image} installs more than sdk/requirements.lock: {sorted(extra)}"
        assert built.podman.label(image, "dev.skiff.flavor") == flavor


def test_server_image_has_no_build_tools_or_caches(built: Built) -> None:
    script = (
        "import shutil, pathlib, json; "
        "print(json.dumps({'tools': [t for t in ('gcc', 'cc', 'make', 'pip', 'uv') if shutil.which(t)], "
        "'caches': [str(p) for p in map(pathlib.Path, ('/root/.cache', '/opt/uv', '/src')) if p.exists()]}))"
    )
    # As root, to see root's home too.
    out = built.podman.run("run", "--rm", *QUIET, "--user", "0", "--entrypoint", "python", SERVER, "-c", script)
    assert json.loads(out.stdout) == {"tools": [], "caches": []}


def test_a_job_runs_through_the_gateway_and_worker_containers(
    built: Built, containers: list[str], tmp_path: Path
) -> None:
    podman = built.podman
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(ECHO_HCL)
    # The gateway runs as uid 10001: the mounted files must be readable by it.
    for path in (tmp_path, endpoints, endpoints / "echo.hcl"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    spec = load_endpoints(endpoints)["echo"]
    api_key = "sk_images_" + secrets.token_hex(16)
    port = free_port()
    suffix = secrets.token_hex(4)
    gateway, worker = f"skiff-test-gateway-{suffix}", f"skiff-test-worker-{suffix}"
    worker_id = f"echo-image-{suffix}"

    _run_detached(
        podman,
        containers,
        gateway,
        SERVER,
        [
            # No systemd here for podman's health timer; `podman healthcheck run` below runs it once.
            "--health-interval=disable",
            "--volume",
            f"{endpoints}:/etc/skiff/endpoints:ro",
            "--env",
            f"SKIFF_API_KEY={api_key}",
            "--env",
            "SKIFF_HOST=127.0.0.1",
            "--env",
            f"SKIFF_PORT={port}",
        ],
        ["gateway"],
    )
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {api_key}"}, timeout=30) as client:

        def answers() -> bool:
            _assert_running(podman, gateway)
            try:
                return client.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        eventually(
            answers,
            timeout=60,
            interval=0.2,
            what="GET /healthz of the gateway container",
            context=lambda: _logs(podman, gateway),
        )
        # The image's own HEALTHCHECK, run by podman inside the container.
        health = podman.run("healthcheck", "run", gateway, check=False)
        assert health.returncode == 0, f"HEALTHCHECK failed: {health.stdout}{health.stderr}\n" + _logs(podman, gateway)

        env = worker_environment(
            spec,
            gateway_url=base,
            # The admin key is valid on every worker route; the gateway's worker secret stays in
            # its container's store.
            worker_key=api_key,
            worker_id=worker_id,
            ping_interval_s=2,
        )
        env_args = [arg for key, value in sorted(env.items()) for arg in ("--env", f"{key}={value}")]
        # The image's own CMD (examples/workers/Dockerfile), with the platform's environment.
        _run_detached(podman, containers, worker, ECHO_WORKER, env_args, [])

        payload = {"hello": "from a container", "n": [1, 2, 3]}
        try:
            response = client.post("/v2/echo/runsync?wait=90000", json={"input": payload}, timeout=120)
        except httpx.TransportError as exc:
            raise AssertionError(f"runsync: {exc!r}\n{_logs(podman, gateway)}\n{_logs(podman, worker)}") from exc
        body = response.json()
        where = f"{body}\n{_logs(podman, gateway)}\n{_logs(podman, worker)}"
        assert response.status_code == 200, where
        assert body["status"] == "COMPLETED", where
        assert body["output"] == payload, where
        assert body["workerId"] == worker_id, where
        # The request without the key is refused: the key above is what let it in.
        assert httpx.post(f"{base}/v2/echo/runsync", json={"input": 1}, timeout=10).status_code == 401
        # Nomad stops the task with SIGTERM: `skiff gateway`, PID 1 in the container, exits on it.
        stopped = time.monotonic()
        podman.run("stop", "--time", "20", gateway)
        code = podman.run("inspect", "--format", "{{.State.ExitCode}}", gateway).stdout.strip()
        assert code == "0" and time.monotonic() - stopped < 15, f"exit {code}\n" + _logs(podman, gateway)


def _wait_healthy(podman: Podman, name: str, timeout: float = 60) -> None:
    """Until the image's HEALTHCHECK passes inside the container (podman runs it there)."""

    def passes() -> bool:
        if podman.run("healthcheck", "run", name, check=False).returncode == 0:
            return True
        _assert_running(podman, name)
        return False

    eventually(
        passes, timeout=timeout, interval=0.5, what=f"the HEALTHCHECK of {name}", context=lambda: _logs(podman, name)
    )


def test_the_server_image_runs_the_controller_too(built: Built, containers: list[str], tmp_path: Path) -> None:
    """The other entry point: `skiff controller`, healthy by its --port, and healthy without one."""
    podman = built.podman
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(ECHO_HCL)
    for path in (tmp_path, endpoints, endpoints / "echo.hcl"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    port = free_port()
    suffix = secrets.token_hex(4)
    common = [
        "--health-interval=disable",
        "--volume",
        f"{endpoints}:/etc/skiff/endpoints:ro",
        "--env",
        f"SKIFF_API_KEY=sk_images_{suffix}",
    ]
    with_port, without_port = f"skiff-test-controller-{suffix}", f"skiff-test-controller-noport-{suffix}"
    _run_detached(
        podman, containers, with_port, SERVER, common, ["controller", "--host", "127.0.0.1", "--port", str(port)]
    )
    _run_detached(podman, containers, without_port, SERVER, common, ["controller"])
    _wait_healthy(podman, with_port)
    body = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json()
    assert body["ok"] is True and body["leader"] is True, body
    _wait_healthy(podman, without_port)
