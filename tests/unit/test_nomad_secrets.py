"""Endpoint secrets through Nomad: the rendered template read by the Nomad double's client side,
which renders it into the task's environment as Nomad does (tests/support/doubles/nomad.py
`_render_templates`), and `skiff secrets --nomad` writing the variable it reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skiff_core.config import Settings
from skiff_core.nomad.client import NomadClient
from skiff_core.nomad.render import RenderOptions, render_job, secrets_variable
from skiff_core.spec import EndpointSpec
from tests.support.doubles.nomad import NomadDouble
from tests.support.stack import SKIFF
from tests.support.wait import eventually_async

DUMP = r"""
import json, os, sys, time
with open(sys.argv[1], "w") as f:
    json.dump({k: os.environ.get(k) for k in ("HF_TOKEN", "OTHER", "RUNPOD_AI_API_KEY")}, f)
time.sleep(60)
"""


def _spec(tmp_path: Path, secrets: list[str]) -> EndpointSpec:
    script = tmp_path / "dump.py"
    script.write_text(DUMP)
    return EndpointSpec.model_validate(
        {"name": "llm", "command": [sys.executable, str(script), str(tmp_path / "env.json")], "secrets": secrets}
    )


async def _register(client: NomadClient, spec: EndpointSpec, *, err_missing_key: bool = True) -> dict[str, object]:
    body = render_job(spec, Settings(), RenderOptions(driver="raw_exec"))
    job = body["Job"]
    job["TaskGroups"][0]["Count"] = 1
    if not err_missing_key:
        job["TaskGroups"][0]["Tasks"][0]["Templates"][1]["ErrMissingKey"] = False
    await client.put_variable("nomad/jobs/skiff-llm", {"worker_key": "skw_llm"})
    await client.register(body)
    return dict(job)


async def test_a_secret_reaches_the_task_env_from_the_variable_and_never_the_job(tmp_path: Path) -> None:
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        await client.put_variable(secrets_variable("llm"), {"HF_TOKEN": "hf_secret", "UNUSED": "x"})
        job = await _register(client, _spec(tmp_path, ["HF_TOKEN"]))
        out = tmp_path / "env.json"
        await eventually_async(out.exists, timeout=15)
        env = json.loads(out.read_text())
        assert env == {"HF_TOKEN": "hf_secret", "OTHER": None, "RUNPOD_AI_API_KEY": "skw_llm"}
        assert "hf_secret" not in json.dumps(job) and "hf_secret" not in json.dumps(nomad.jobs["skiff-llm"])
        (alloc,) = nomad.live_allocs("skiff-llm")
        (rendered,) = nomad.root.rglob("endpoint.env")
        assert rendered.read_text() == "HF_TOKEN=hf_secret\n"
        assert rendered.stat().st_mode & 0o777 == 0o600
        assert alloc["ClientStatus"] == "running"
        await client.close()


async def test_an_unset_secret_fails_the_task_with_consul_templates_message(tmp_path: Path) -> None:
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        await client.put_variable(secrets_variable("llm"), {"HF_TOKEN": "hf_secret"})
        await _register(client, _spec(tmp_path, ["HF_TOKEN", "OTHER"]))
        await eventually_async(lambda: any(a["ClientStatus"] == "failed" for a in nomad.allocs.values()), timeout=15)
        (alloc,) = nomad.allocs.values()
        message = alloc["TaskStates"]["worker"]["Events"][-1]["DisplayMessage"]
        assert message.endswith('executing "" at <.OTHER>: map has no entry for key "OTHER"'), message
        assert not (tmp_path / "env.json").exists()
        await client.close()


async def test_without_err_missing_key_go_templates_print_no_value(tmp_path: Path) -> None:
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        await client.put_variable(secrets_variable("llm"), {"HF_TOKEN": "hf_secret"})
        await _register(client, _spec(tmp_path, ["HF_TOKEN", "OTHER"]), err_missing_key=False)
        out = tmp_path / "env.json"
        await eventually_async(out.exists, timeout=15)
        assert json.loads(out.read_text())["OTHER"] == "<no value>"
        await client.close()


def test_skiff_secrets_nomad_writes_lists_and_removes_the_variable_item(tmp_path: Path) -> None:
    with NomadDouble() as nomad:
        env = {**os.environ, "SKIFF_NOMAD_ADDR": nomad.address}

        def skiff(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [SKIFF, "secrets", *args, "--nomad"], input=stdin, env=env, capture_output=True, text=True, timeout=60
            )

        done = skiff("set", "llm", "HF_TOKEN", stdin="hf_secret\n")
        assert done.returncode == 0, done.stderr
        assert "hf_secret" not in done.stdout + done.stderr
        assert nomad.variables[("default", "nomad/jobs/skiff-llm/worker")]["Items"] == {"HF_TOKEN": "hf_secret"}
        assert skiff("set", "llm", "OTHER", stdin="two\nlines").returncode == 1
        listed = skiff("list", "llm")
        assert listed.returncode == 0 and listed.stdout.split() == ["HF_TOKEN"]
        assert skiff("rm", "llm", "HF_TOKEN").returncode == 0
        assert ("default", "nomad/jobs/skiff-llm/worker") not in nomad.variables
        assert skiff("rm", "llm", "HF_TOKEN").returncode == 1


def test_deploy_refuses_an_endpoint_whose_secret_is_not_in_nomad(tmp_path: Path) -> None:
    directory = tmp_path / "endpoints"
    directory.mkdir()
    (directory / "llm.hcl").write_text(
        'endpoint "llm" {\n  image   = "ghcr.io/acme/llm:1"\n  secrets = ["HF_TOKEN"]\n}\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOMAD_", "CONSUL_", "SKIFF_"))}
    with NomadDouble() as nomad:
        env.update({"NOMAD_ADDR": nomad.address, "SKIFF_API_KEY": "k"})
        deploy = [SKIFF, "deploy", str(directory), "--wait", "0"]
        refused = subprocess.run(deploy, env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert "secret HF_TOKEN not set in Nomad: `skiff secrets set --nomad llm HF_TOKEN`" in refused.stderr
        assert "skiff-llm" not in nomad.jobs
        nomad.variables[("default", secrets_variable("llm"))] = {
            "Namespace": "default",
            "Path": secrets_variable("llm"),
            "Items": {"HF_TOKEN": "hf_secret"},
            "CreateIndex": 1,
            "ModifyIndex": 1,
        }
        done = subprocess.run(deploy, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "skiff-llm" in nomad.jobs and "hf_secret" not in json.dumps(nomad.jobs["skiff-llm"])
