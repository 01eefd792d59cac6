"""`skiff render` and `skiff deploy`, run as real processes against the Nomad double."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import hcl2

from skiff_core.config import Settings
from skiff_core.keys import KeyRing
from skiff_core.nomad.render import render_job
from skiff_core.store.sqlite import SqliteStore
from tests.support.doubles.nomad import FakeNode, NomadDouble

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "endpoints"


def skiff(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMAD_", "CONSUL_", "SKIFF_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "skiff_cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def test_render_json_is_the_register_body() -> None:
    result = skiff("render", "runpod-echo", "--endpoints", str(EXAMPLES))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    from skiff_core.endpoints import load_endpoints

    expected = render_job(load_endpoints(EXAMPLES)["runpod-echo"], Settings())
    assert body == expected
    task = body["Job"]["TaskGroups"][0]["Tasks"][0]
    device = task["Resources"]["Devices"][0]
    assert device["Constraints"][0]["RTarget"] == "NVIDIA L4,NVIDIA A10G"
    # The key's template, never a key.
    assert "RUNPOD_AI_API_KEY" not in task["Env"] and "skw_" not in result.stdout
    assert task["Templates"][0]["EmbeddedTmpl"].startswith('{{ with nomadVar "nomad/jobs/skiff-runpod-echo" }}')


def test_render_hcl_and_errors() -> None:
    result = skiff("render", "echo", "--endpoints", str(EXAMPLES), "--format", "hcl", env={"SKIFF_API_KEY": "sk_x"})
    assert result.returncode == 0, result.stderr
    parsed = hcl2.load(io.StringIO(result.stdout))
    assert '"skiff-echo"' in parsed["job"][0]
    task = parsed["job"][0]['"skiff-echo"']["group"][0]['"worker"']["task"][0]['"worker"']
    assert "RUNPOD_AI_API_KEY" not in task["env"][0] and "skw_" not in result.stdout
    (template,) = task["template"]
    assert template["env"] is True and template["destination"] == '"secrets/worker.env"'
    assert 'nomadVar \\"nomad/jobs/skiff-echo\\"' in template["data"]
    missing = skiff("render", "nope", "--endpoints", str(EXAMPLES))
    assert missing.returncode == 1 and "no endpoint 'nope'" in missing.stderr and "echo" in missing.stderr
    assert "Traceback" not in missing.stderr


def _endpoints_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "endpoints"
    shutil.copytree(EXAMPLES, directory)
    return directory


def test_deploy_registers_everything_and_prunes_removed(tmp_path: Path) -> None:
    directory = _endpoints_dir(tmp_path)
    with NomadDouble(nodes=[FakeNode("gpu-1", {("nvidia", "gpu", "NVIDIA L4"): 2})]) as nomad:
        state = tmp_path / "state"
        env = {"NOMAD_ADDR": nomad.address, "SKIFF_STATE_DIR": str(state), "SKIFF_PUBLIC_URL": "http://gw:8000"}
        result = skiff("deploy", str(directory), "--wait", "2", env=env)
        assert result.returncode == 0, result.stderr + result.stdout
        assert set(nomad.jobs) == {"skiff-echo", "skiff-stream", "skiff-runpod-echo", "skiff-lb-hello"}
        assert "created" in result.stdout and "4 endpoint(s) deployed" in result.stdout
        job = nomad.jobs["skiff-echo"]
        env_vars = job["TaskGroups"][0]["Tasks"][0]["Env"]
        assert "RUNPOD_AI_API_KEY" not in env_vars
        assert env_vars["RUNPOD_WEBHOOK_GET_JOB"].startswith("http://gw:8000/v2/echo/job-take/")
        # Each endpoint's worker key is in its job's Nomad Variable, derived from the worker secret
        # in the job store (the one the gateways check worker keys against).
        keys = KeyRing(None)
        store = SqliteStore(state / "skiff.db")
        asyncio.run(keys.load(store))
        asyncio.run(store.close())
        for name in ("echo", "stream", "runpod-echo", "lb-hello"):
            variable = nomad.variable(f"nomad/jobs/skiff-{name}")
            assert variable is not None and variable["Items"] == {"worker_key": keys.worker_key(name)}
        registrations = [b for m, p, b in nomad.requests if p == "/v1/jobs" and m in ("PUT", "POST")]
        assert all(b is not None and b["PreserveCounts"] for b in registrations)

        (directory / "stream.hcl").unlink()
        again = skiff("deploy", str(directory), "--wait", "0", env=env)
        assert again.returncode == 0, again.stderr
        assert "stream: removed" in again.stdout and "unchanged" in again.stdout
        assert set(nomad.jobs) == {"skiff-echo", "skiff-runpod-echo", "skiff-lb-hello"}
        assert nomad.variable("nomad/jobs/skiff-stream") is None
        # Unchanged keys were not written again.
        assert len([p for m, p, _ in nomad.requests if m == "PUT" and p.startswith("/v1/var/")]) == 4
        # A job not managed by Skiff is never touched.
        nomad.jobs["skiff-handmade"] = dict(nomad.jobs["skiff-echo"], ID="skiff-handmade", Meta={})
        assert skiff("deploy", str(directory), "--wait", "0", env=env).returncode == 0
        assert "skiff-handmade" in nomad.jobs


def test_deploy_wrong_address_and_denied_token(tmp_path: Path) -> None:
    directory = _endpoints_dir(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = skiff(
        "deploy",
        str(directory),
        env={"NOMAD_ADDR": f"http://127.0.0.1:{port}", "SKIFF_STATE_DIR": str(tmp_path / "state")},
    )
    assert down.returncode == 2 and f"cannot reach Nomad at http://127.0.0.1:{port}" in down.stderr
    assert "Traceback" not in down.stderr
    with NomadDouble(acl_tokens={"right": None}) as nomad:
        denied = skiff(
            "deploy",
            str(directory),
            "--nomad-token",
            "wrong",
            env={"NOMAD_ADDR": nomad.address, "SKIFF_STATE_DIR": str(tmp_path / "state")},
        )
        assert denied.returncode == 2 and "ACL token not found" in denied.stderr
        assert "Traceback" not in denied.stderr and nomad.jobs == {}
    with NomadDouble(acl_tokens={"jobs-only": {"submit-job", "read-job", "list-jobs", "scale-job"}}) as nomad:
        denied = skiff(
            "deploy",
            str(directory),
            "--nomad-token",
            "jobs-only",
            env={"NOMAD_ADDR": nomad.address, "SKIFF_STATE_DIR": str(tmp_path / "state")},
        )
        assert denied.returncode == 2 and "Permission denied" in denied.stderr
        assert 'variables capabilities ["read", "write", "destroy"] on path "nomad/jobs/skiff-*"' in denied.stderr
        assert "Traceback" not in denied.stderr and nomad.jobs == {}


def test_deploy_refuses_bad_image_before_sending(tmp_path: Path) -> None:
    directory = _endpoints_dir(tmp_path)
    text = (directory / "echo.hcl").read_text().replace("ghcr.io/skiff-dev/echo-worker:0.1", "ghcr.io/Skiff/Echo:0.1")
    (directory / "echo.hcl").write_text(text)
    with NomadDouble() as nomad:
        result = skiff(
            "deploy", str(directory), env={"NOMAD_ADDR": nomad.address, "SKIFF_STATE_DIR": str(tmp_path / "state")}
        )
        assert result.returncode == 1
        assert "invalid image reference 'ghcr.io/Skiff/Echo:0.1'" in result.stderr
        assert "nothing was sent to Nomad" in result.stderr and nomad.requests == []


def test_deploy_reports_a_gpu_model_no_node_has(tmp_path: Path) -> None:
    directory = tmp_path / "endpoints"
    directory.mkdir()
    (directory / "big.hcl").write_text(
        'endpoint "big" {\n  image = "ghcr.io/acme/big:1"\n\n  gpu {\n    count  = 1\n'
        '    models = ["NVIDIA H200"]\n  }\n\n  scaling {\n    min_workers = 1\n    max_workers = 2\n  }\n}\n'
    )
    with NomadDouble(nodes=[FakeNode("gpu-1", {("nvidia", "gpu", "NVIDIA L4"): 1})]) as nomad:
        result = skiff(
            "deploy",
            str(directory),
            "--wait",
            "1",
            env={"NOMAD_ADDR": nomad.address, "SKIFF_STATE_DIR": str(tmp_path / "state")},
        )
        assert result.returncode == 1
        assert "constraint 'missing devices' filtered 1 node(s)" in result.stderr
        assert "NVIDIA H200" in result.stderr and "failed" in result.stdout


def test_deploy_prepull_registers_a_sysbatch_job_per_image(tmp_path: Path) -> None:
    directory = _endpoints_dir(tmp_path)
    with NomadDouble() as nomad:
        env = {"NOMAD_ADDR": nomad.address, "SKIFF_API_KEY": "k"}
        result = skiff("deploy", str(directory), "--prepull", "--wait", "0", env=env)
        assert result.returncode == 0, result.stderr
        pulls = {j: job for j, job in nomad.jobs.items() if j.startswith("skiff-prepull.")}
        assert sorted(pulls) == [f"skiff-prepull.{name}" for name in ("echo", "lb-hello", "runpod-echo", "stream")]
        echo = pulls["skiff-prepull.echo"]
        assert echo["Type"] == "sysbatch"
        assert echo["TaskGroups"][0]["Tasks"][0]["Config"]["image"] == "ghcr.io/skiff-dev/echo-worker:0.1"
        # A second deploy leaves the pre-pull jobs alone (not pruned as endpoints that left DIR).
        again = skiff("deploy", str(directory), "--wait", "0", env=env)
        assert again.returncode == 0, again.stderr
        assert all(j in nomad.jobs and not nomad.jobs[j].get("Stop") for j in pulls)
