"""NomadOrchestrator against the Nomad HTTP double (tests/doubles/nomad.py)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from skiff_core.config import Settings
from skiff_core.jobs import cold_start_parts
from skiff_core.nomad.client import (
    NomadBadRequest,
    NomadClient,
    NomadConflict,
    NomadPermissionDenied,
    NomadUnreachable,
)
from skiff_core.nomad.render import ImageReferenceError, RenderOptions, render_job
from skiff_core.orchestrator.base import Orchestrator, WorkerPhase
from skiff_core.orchestrator.nomad import DrainMismatch, NomadOrchestrator, PlacementFailed
from skiff_core.orchestrator.nomad_crashes import HEALTHY_RUN_S, latest_crash
from skiff_core.spec import EndpointSpec
from tests.support.doubles.nomad import FakeNode, NomadDouble
from tests.support.wait import eventually_async


def spec(**overrides: Any) -> EndpointSpec:
    fields: dict[str, Any] = {
        "name": "echo",
        "image": "ghcr.io/acme/echo:1",
        "command": ["python", "w.py"],
        "scaling": {"min_workers": 0, "max_workers": 5},
    }
    fields.update(overrides)
    return EndpointSpec(**fields)


@pytest.fixture
def nomad() -> Iterator[NomadDouble]:
    with NomadDouble(nodes=[FakeNode("gpu-1", {("nvidia", "gpu", "NVIDIA L4"): 4})]) as double:
        yield double


def key_of(endpoint: str) -> str:
    return f"skw_{endpoint}_test"


S = 1_000_000_000


def orchestrator(address: str, token: str | None = None, **kw: Any) -> NomadOrchestrator:
    settings = Settings(nomad_addr=address, nomad_token=token)
    client = NomadClient(address, token=token, retries=1, backoff_s=0.05)
    kw.setdefault("worker_key", key_of)
    return NomadOrchestrator(settings, client=client, **kw)


def var_requests(nomad: NomadDouble, method: str) -> list[dict[str, Any] | None]:
    return [b for m, p, b in nomad.requests if m == method and p.startswith("/v1/var/")]


async def test_implements_the_protocol_and_registers_with_preserve_counts(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    assert isinstance(orch, Orchestrator)
    await orch.apply(spec())
    method, path, body = next(r for r in nomad.requests if r[1] == "/v1/jobs")
    assert (method, path) in {("PUT", "/v1/jobs"), ("POST", "/v1/jobs")}
    assert body is not None and body["PreserveCounts"] is True and body["Job"]["ID"] == "skiff-echo"
    await orch.scale("echo", 3)
    await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 3)
    # Re-applying (the spec's Count is min_workers = 0) keeps the 3 workers the autoscaler set.
    await orch.apply(spec(env={"NEW": "1"}))
    assert nomad.jobs["skiff-echo"]["TaskGroups"][0]["Count"] == 3
    assert len(nomad.live_allocs("skiff-echo")) == 3
    await orch.close()


async def test_scale_message_and_workers_are_allocations(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    await orch.scale("echo", 2)
    await eventually_async(lambda: all(a["ClientStatus"] == "running" for a in nomad.live_allocs("skiff-echo")))
    scale_body = next(b for m, p, b in nomad.requests if p == "/v1/job/skiff-echo/scale")
    assert scale_body is not None
    assert scale_body["Target"] == {"Job": "skiff-echo", "Group": "worker"} and scale_body["Count"] == 2
    assert "skiff: scale echo to 2" in scale_body["Message"]
    workers = await orch.workers("echo")
    assert sorted(w.id for w in workers) == sorted(a["ID"] for a in nomad.live_allocs("skiff-echo"))
    assert {w.phase for w in workers} == {WorkerPhase.RUNNING}
    assert {w.spec_hash for w in workers} == {spec().spec_hash()}
    status = await orch.client.scale_status("skiff-echo")
    assert status["TaskGroups"]["worker"]["Desired"] == 2
    assert status["TaskGroups"]["worker"]["Events"][0]["Message"].startswith("skiff: scale echo to 2")
    await orch.close()


async def test_drain_aware_scale_down_stops_exactly_the_named_workers(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    await orch.scale("echo", 4)
    await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 4)
    by_name = {a["Name"]: a["ID"] for a in nomad.live_allocs("skiff-echo")}
    # Nomad stops the highest name indexes (reconcile_cluster.go computeStop, nameIndex.Highest).
    victims = await orch.stop_candidates("echo", 2)
    assert set(victims) == {by_name["skiff-echo.worker[3]"], by_name["skiff-echo.worker[2]"]}
    # Naming other (idle) workers than the ones Nomad would stop is refused: no surprise stops.
    with pytest.raises(DrainMismatch) as excinfo:
        await orch.scale("echo", 2, stop=[by_name["skiff-echo.worker[0]"], by_name["skiff-echo.worker[1]"]])
    assert set(excinfo.value.would_stop) == set(victims)
    assert len(nomad.live_allocs("skiff-echo")) == 4
    await orch.scale("echo", 2, stop=victims)
    await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 2)
    assert {a["ID"] for a in nomad.live_allocs("skiff-echo")} == {
        by_name["skiff-echo.worker[0]"],
        by_name["skiff-echo.worker[1]"],
    }
    # Scaling up again reuses the freed lowest indexes (computePlacements, nameIndex.Next).
    await orch.scale("echo", 3)
    await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 3)
    assert sorted(a["Name"] for a in nomad.live_allocs("skiff-echo"))[-1] == "skiff-echo.worker[2]"
    await orch.scale("echo", 0, stop=await orch.stop_candidates("echo", 0))
    await eventually_async(lambda: not nomad.live_allocs("skiff-echo"))
    await orch.close()


async def test_watch_workers_is_a_blocking_query(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    workers, index = await orch.watch_workers("echo", index=0, wait_s=1)
    assert workers == [] and index > 0
    started = time.monotonic()
    watch = asyncio.create_task(orch.watch_workers("echo", index=index, wait_s=20))
    await asyncio.sleep(0.2)
    assert not watch.done(), "a blocking query must wait for a change"
    await orch.scale("echo", 1)
    workers, new_index = await asyncio.wait_for(watch, 10)
    assert new_index > index and len(workers) == 1
    assert time.monotonic() - started < 15
    assert any(p == "/v1/job/skiff-echo/allocations" for _, p, _ in nomad.requests)
    await orch.close()


async def test_remove_deregisters(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    await orch.scale("echo", 2)
    await orch.remove("echo")
    assert "skiff-echo" not in nomad.jobs
    assert not nomad.live_allocs("skiff-echo")
    assert await orch.workers("echo") == []
    await orch.remove("echo")  # already gone: fine
    await orch.close()


async def test_worker_key_goes_to_the_jobs_variable_before_the_job_and_leaves_after_it(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    calls = [(m, p) for m, p, _ in nomad.requests]
    write = calls.index(("PUT", "/v1/var/nomad/jobs/skiff-echo"))
    register = next(i for i, (m, p) in enumerate(calls) if p == "/v1/jobs" and m in ("PUT", "POST"))
    assert write < register, calls
    (body,) = var_requests(nomad, "PUT")
    assert body == {"Namespace": "default", "Path": "nomad/jobs/skiff-echo", "Items": {"worker_key": "skw_echo_test"}}
    variable = nomad.variable("nomad/jobs/skiff-echo")
    assert variable is not None and variable["Items"] == {"worker_key": "skw_echo_test"}
    # The job itself carries no key: only the template that reads it.
    task = nomad.jobs["skiff-echo"]["TaskGroups"][0]["Tasks"][0]
    assert "RUNPOD_AI_API_KEY" not in task["Env"] and "skw_echo_test" not in json.dumps(nomad.jobs["skiff-echo"])
    assert 'nomadVar "nomad/jobs/skiff-echo"' in task["Templates"][0]["EmbeddedTmpl"]

    await orch.remove("echo")
    calls = [(m, p) for m, p, _ in nomad.requests]
    assert calls.index(("DELETE", "/v1/job/skiff-echo")) < calls.index(("DELETE", "/v1/var/nomad/jobs/skiff-echo"))
    assert "skiff-echo" not in nomad.jobs and nomad.variable("nomad/jobs/skiff-echo") is None
    await orch.remove("echo")  # already gone: nothing to delete, no error
    assert len(var_requests(nomad, "DELETE")) == 1
    await orch.close()


async def test_an_unchanged_key_is_not_rewritten_and_a_new_one_is(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    first = nomad.variable("nomad/jobs/skiff-echo")
    await orch.apply(spec(env={"NEW": "1"}))
    assert len(var_requests(nomad, "PUT")) == 1
    assert nomad.variable("nomad/jobs/skiff-echo") == first
    # A new key (another SKIFF_API_KEY) is written over the one read, by check-and-set.
    rotated = orchestrator(nomad.address, worker_key=lambda name: f"skw_{name}_rotated")
    await rotated.apply(spec())
    after = nomad.variable("nomad/jobs/skiff-echo")
    assert first is not None and after is not None
    assert after["Items"] == {"worker_key": "skw_echo_rotated"} and after["ModifyIndex"] > first["ModifyIndex"]
    cas = [p for m, p, _ in nomad.requests if m == "PUT" and p.startswith("/v1/var/")]
    assert len(cas) == 2
    for orch_ in (orch, rotated):
        await orch_.close()


async def test_variable_writes_are_check_and_set_and_keep_other_items(nomad: NomadDouble) -> None:
    client = NomadClient(nomad.address, retries=0)
    path = "nomad/jobs/skiff-echo"
    created = await client.put_variable(path, {"other": "x"}, cas=0)
    assert (created["Path"], created["Namespace"], created["Items"]) == (path, "default", {"other": "x"})
    assert created["CreateIndex"] == created["ModifyIndex"] > 0
    with pytest.raises(NomadConflict, match="changed concurrently"):
        await client.put_variable(path, {"other": "y"}, cas=0)  # 0: only if absent
    with pytest.raises(NomadConflict):
        await client.put_variable(path, {"other": "y"}, cas=created["ModifyIndex"] + 100)
    assert await client.set_variable_item(path, "worker_key", "k1") is True
    assert await client.set_variable_item(path, "worker_key", "k1") is False
    assert (await client.get_variable(path) or {})["Items"] == {"other": "x", "worker_key": "k1"}
    # Removing the worker key leaves what someone else put there, and the variable with it.
    assert await client.remove_variable_item(path, "worker_key") is True
    assert (await client.get_variable(path) or {})["Items"] == {"other": "x"}
    assert await client.remove_variable_item(path, "worker_key") is False
    await client.close()


class RacedClient(NomadClient):
    """A real client; right after its first read of a variable another writer changes it."""

    def __init__(self, address: str, other: NomadClient) -> None:
        super().__init__(address, retries=0)
        self.other = other
        self.reads = 0

    async def get_variable(self, path: str) -> dict[str, Any] | None:
        found = await super().get_variable(path)
        self.reads += 1
        if self.reads == 1:
            await self.other.put_variable(path, {"theirs": "1"})
        return found


async def test_a_write_racing_another_writer_reads_again_instead_of_overwriting(nomad: NomadDouble) -> None:
    other = NomadClient(nomad.address, retries=0)
    raced = RacedClient(nomad.address, other)
    assert await raced.set_variable_item("nomad/jobs/skiff-echo", "worker_key", "k") is True
    # The first write (cas=0: create) lost to the other writer with 409; the second kept its item.
    assert raced.reads == 2
    assert (nomad.variable("nomad/jobs/skiff-echo") or {})["Items"] == {"theirs": "1", "worker_key": "k"}
    for client in (other, raced):
        await client.close()


def test_the_controller_policy_covers_the_worker_key_variables_and_not_skiffs_own() -> None:
    """nomad/policies/skiff-controller.policy.hcl grants what apply/remove use on the path render
    names, and denies the exact paths of Skiff's own jobs' configuration except its own."""
    import fnmatch

    import hcl2

    from skiff_core.nomad.render import worker_key_variable

    policy = hcl2.load((Path(__file__).parents[2] / "nomad" / "policies" / "skiff-controller.policy.hcl").open())
    ((_ns, namespace),) = policy["namespace"][0].items()
    paths = {
        k.strip('"'): [c.strip('"') for c in v["capabilities"]]
        for p in namespace["variables"][0]["path"]
        for k, v in p.items()
    }

    def capabilities(path: str) -> list[str]:
        if path in paths:  # the most specific rule for a path applies
            return paths[path]
        globs = [g for g in paths if fnmatch.fnmatchcase(path, g)]
        return paths[max(globs, key=len)] if globs else []

    assert set(capabilities(worker_key_variable("echo"))) == {"read", "write", "destroy"}
    for own in ("gateway", "redis", "elasticmq"):
        assert capabilities(f"nomad/jobs/skiff-{own}") == ["deny"]
    assert "nomad/jobs/skiff-controller" not in paths  # would override its implicit read of its own


async def test_wrong_address_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    orch = orchestrator(f"http://127.0.0.1:{port}")
    with pytest.raises(NomadUnreachable, match=rf"cannot reach Nomad at http://127.0.0.1:{port}.*NOMAD_ADDR"):
        await orch.apply(spec())
    with pytest.raises(NomadUnreachable, match="cannot reach Nomad"):
        await orch.scale("echo", 1)
    await orch.close()


async def test_denied_tokens_are_clear_errors() -> None:
    tokens: dict[str, set[str] | None] = {"good": None, "reader": {"read-job"}}
    with NomadDouble(acl_tokens=tokens) as nomad:
        anonymous = orchestrator(nomad.address)
        with pytest.raises(NomadPermissionDenied, match=r"anonymous request.*Permission denied"):
            await anonymous.apply(spec())
        unknown = orchestrator(nomad.address, token="nope")
        with pytest.raises(NomadPermissionDenied, match="ACL token not found"):
            await unknown.apply(spec())
        await orchestrator(nomad.address, token="good").apply(spec())
        reader = orchestrator(nomad.address, token="reader")
        assert await reader.workers("echo") == []
        with pytest.raises(NomadPermissionDenied, match=r"Permission denied.*scale-job"):
            await reader.scale("echo", 1)
        for orch in (anonymous, unknown, reader):
            await orch.close()


async def test_a_token_without_variables_write_is_a_clear_error_and_registers_nothing() -> None:
    jobs_only = {"submit-job", "read-job", "scale-job", "variables:read"}
    tokens: dict[str, set[str] | None] = {"jobs-only": jobs_only, "no-destroy": jobs_only | {"variables:write"}}
    with NomadDouble(acl_tokens=tokens) as nomad:
        denied = orchestrator(nomad.address, token="jobs-only")
        with pytest.raises(
            NomadPermissionDenied,
            match=r"refused the token in NOMAD_TOKEN: Permission denied\. The token needs variables capabilities "
            r'\["read", "write", "destroy"\] on path "nomad/jobs/skiff-\*" .*in namespace \'default\'',
        ):
            await denied.apply(spec())
        assert nomad.jobs == {} and nomad.variables == {}
        # Without destroy the job is stopped, then removing the key is refused just as clearly.
        partial = orchestrator(nomad.address, token="no-destroy")
        await partial.apply(spec())
        with pytest.raises(NomadPermissionDenied, match=r"Permission denied.*variables capabilities"):
            await partial.remove("echo")
        assert "skiff-echo" not in nomad.jobs
        for orch in (denied, partial):
            await orch.close()


async def test_gpu_model_no_node_has_reports_nomads_placement_failure(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    gpu = spec(name="big", gpu={"count": 1, "models": ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"]})
    await orch.apply(gpu)  # count 0: nothing to place yet
    with pytest.raises(PlacementFailed) as excinfo:
        await orch.scale("big", 2)
    message = str(excinfo.value)
    assert "'missing devices' filtered 1 node(s)" in message and "2 allocation(s) unplaced" in message
    assert "NVIDIA H100 80GB HBM3, NVIDIA A100-SXM4-80GB" in message and "nomad-device-nvidia" in message
    # The same request for a model the node has is placed.
    await orch.apply(spec(name="small", gpu={"count": 2, "models": ["NVIDIA L4", "NVIDIA T4"]}))
    await orch.scale("small", 2)
    assert len(nomad.live_allocs("skiff-small")) == 2
    with pytest.raises(PlacementFailed, match="1 allocation"):  # 4 GPUs: a third worker does not fit
        await orch.scale("small", 3)
    await orch.close()


async def test_invalid_image_is_refused_before_anything_is_sent(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    with pytest.raises(ImageReferenceError, match=re.escape("invalid image reference 'ghcr.io/Acme/Echo:1'")):
        # The spec refuses it (skiff validate); model_copy skips that, as a stale caller might.
        await orch.apply(spec().model_copy(update={"image": "ghcr.io/Acme/Echo:1"}))
    assert nomad.requests == []
    await orch.close()


async def test_count_outside_scaling_bounds_is_nomads_400(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    with pytest.raises(NomadBadRequest, match="group count was greater than scaling policy maximum: 6 > 5"):
        await orch.scale("echo", 6)
    await orch.close()


async def test_default_update_strategy_blocks_scaling_ours_does_not(nomad: NomadDouble) -> None:
    """Why render sets Update.MaxParallel = 0: with Nomad's default update strategy a scale
    starts a deployment and the next scale is refused while it runs."""
    client = NomadClient(nomad.address, retries=0)
    # A short execution timeout: with the default strategy's 10m ProgressDeadline, Nomad refuses
    # a longer KillTimeout (test_nomad_double_rules.py).
    body = render_job(spec(name="plain", execution_timeout="60s"), Settings())
    del body["Job"]["Update"]
    await client.register(body)
    await client.scale("skiff-plain", "worker", 1, "first")
    with pytest.raises(NomadBadRequest, match="job scaling blocked due to active deployment"):
        await client.scale("skiff-plain", "worker", 2, "second")
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    for count in (1, 2, 3, 1):
        await orch.scale("echo", count, stop=await orch.stop_candidates("echo", count))
    await client.close()
    await orch.close()


WORKER = r"""
import json, os, signal, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
out = sys.argv[1]
keys = ["NOMAD_ALLOC_ID", "NOMAD_ALLOC_INDEX", "NOMAD_ALLOC_NAME", "NOMAD_PORT_http", "NOMAD_ADDR_http",
        "RUNPOD_POD_ID", "RUNPOD_ENDPOINT_ID", "RUNPOD_WEBHOOK_GET_JOB", "PORT", "NOMAD_TASK_DIR",
        "RUNPOD_AI_API_KEY"]
env = {k: os.environ.get(k) for k in keys}
env["cwd"] = os.getcwd()
def bye(signum, frame):
    with open(out + ".stopped." + env["NOMAD_ALLOC_ID"], "w") as f:
        f.write(str(signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, bye)
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(env["NOMAD_ALLOC_ID"].encode())
    def log_message(self, *a): pass
srv = HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
with open(out + "." + env["NOMAD_ALLOC_ID"], "w") as f:
    json.dump(env, f)
srv.serve_forever()
"""


async def test_allocations_run_as_raw_exec_subprocesses(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    out = tmp_path / "env"
    lb = EndpointSpec.model_validate(
        {
            "name": "web",
            "type": "load_balancer",
            "command": [sys.executable, str(script), str(out)],
            "scaling": {"min_workers": 0, "max_workers": 3},
        }
    )
    with NomadDouble(run_tasks=True) as nomad:
        orch = orchestrator(nomad.address, render_options=RenderOptions(driver="raw_exec"))
        await orch.apply(lb)
        await orch.scale("web", 2)
        await eventually_async(lambda: len(list(tmp_path.glob("env.*-*"))) == 2, timeout=15)
        assert {w.phase for w in await orch.workers("web")} == {WorkerPhase.RUNNING}
        envs = [json.loads(p.read_text()) for p in tmp_path.glob("env.*-*") if ".stopped." not in p.name]
        allocs = {a["ID"]: a for a in nomad.live_allocs("skiff-web")}
        for env in envs:
            alloc = allocs[env["NOMAD_ALLOC_ID"]]
            assert env["RUNPOD_POD_ID"] == env["NOMAD_ALLOC_ID"]  # ${NOMAD_ALLOC_ID} interpolated
            assert env["PORT"] == env["NOMAD_PORT_http"] and env["NOMAD_ADDR_http"] == f"127.0.0.1:{env['PORT']}"
            assert alloc["Name"] == env["NOMAD_ALLOC_NAME"] == f"skiff-web.worker[{env['NOMAD_ALLOC_INDEX']}]"
            assert env["RUNPOD_ENDPOINT_ID"] == "web" and "/job-take/$ID?" in env["RUNPOD_WEBHOOK_GET_JOB"]
            assert env["cwd"].endswith("/worker") and env["NOMAD_TASK_DIR"].endswith("/worker/local")
            # The key arrived through the template from the variable, not from the job's Env.
            assert env["RUNPOD_AI_API_KEY"] == "skw_web_test"
            rendered = Path(env["cwd"]) / "secrets" / "worker.env"
            assert rendered.read_text() == "RUNPOD_AI_API_KEY=skw_web_test\n"
            assert rendered.stat().st_mode & 0o777 == 0o600
        assert sorted(e["NOMAD_ALLOC_INDEX"] for e in envs) == ["0", "1"]
        # Each worker serves on its port.
        async with httpx.AsyncClient() as http:
            for env in envs:
                resp = await http.get(f"http://127.0.0.1:{env['PORT']}/ping")
                assert resp.text == env["NOMAD_ALLOC_ID"]
        # Scale-down stops the highest index with the task's KillSignal (SIGTERM).
        victim = await orch.stop_candidates("web", 1)
        await orch.scale("web", 1, stop=victim)
        stopped = tmp_path / f"env.stopped.{victim[0]}"
        await eventually_async(stopped.exists, timeout=10)
        assert stopped.read_text() == "15"
        await eventually_async(lambda: nomad.allocs[victim[0]]["ClientStatus"] == "complete", timeout=10)
        assert [w.id for w in await orch.workers("web")] == [a for a in allocs if a != victim[0]]
        await orch.close()


def lb_spec(tmp_path: Path, name: str = "web") -> EndpointSpec:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    return EndpointSpec.model_validate(
        {
            "name": name,
            "type": "load_balancer",
            "command": [sys.executable, str(script), str(tmp_path / "env")],
            "scaling": {"min_workers": 0, "max_workers": 3},
        }
    )


async def test_a_task_whose_template_cannot_render_fails_with_nomads_message(tmp_path: Path) -> None:
    """Without the variable (registered behind the orchestrator's back) or with a template the
    client cannot render, the task never starts: the allocation fails and says why."""
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        body = render_job(lb_spec(tmp_path), Settings(), RenderOptions(driver="raw_exec"))
        body["Job"]["TaskGroups"][0]["Count"] = 1
        await client.register(body)
        await eventually_async(
            lambda: all(a["ClientStatus"] == "failed" for a in nomad.allocs.values()) and nomad.allocs
        )
        (alloc,) = nomad.allocs.values()
        *before, event = alloc["TaskStates"]["worker"]["Events"]
        assert [e["Type"] for e in before] == ["Received", "Task Setup"]  # never "Started"
        assert (
            event["DisplayMessage"] == "Template failed: Missing: nomad.var.block(nomad/jobs/skiff-web@default.global)"
        )
        assert event["FailsTask"] is True and alloc["ClientDescription"] == "Failed tasks"

        other = render_job(lb_spec(tmp_path, "web2"), Settings(), RenderOptions(driver="raw_exec"))
        other["Job"]["TaskGroups"][0]["Count"] = 1
        template = other["Job"]["TaskGroups"][0]["Tasks"][0]["Templates"][0]
        # Another job's variable: outside the task's implicit workload identity access.
        template["EmbeddedTmpl"] = template["EmbeddedTmpl"].replace("skiff-web2", "skiff-web")
        await client.put_variable("nomad/jobs/skiff-web", {"worker_key": "k"})
        await client.register(other)
        await eventually_async(
            lambda: (
                bool(nomad.live_allocs("skiff-web2")) is False
                and any(a["JobID"] == "skiff-web2" and a["ClientStatus"] == "failed" for a in nomad.allocs.values())
            )
        )
        failed = next(a for a in nomad.allocs.values() if a["JobID"] == "skiff-web2")
        assert failed["TaskStates"]["worker"]["Events"][-1]["DisplayMessage"].endswith(
            "nomad.var.block(nomad/jobs/skiff-web@default.global): Permission denied"
        )
        assert not list(tmp_path.glob("env.*"))  # no worker process ever started
        await client.close()


@pytest.mark.parametrize(
    "template",
    [
        '{{ with nomadVar "nomad/jobs/skiff-web" }}KEY={{ .worker_key | toJSON }}{{ end }}',
        '{{ key "service/x" }}',
        "RUNPOD_AI_API_KEY=plain",
    ],
)
async def test_the_double_refuses_templates_it_does_not_understand(tmp_path: Path, template: str) -> None:
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        await client.put_variable("nomad/jobs/skiff-web", {"worker_key": "k"})
        body = render_job(lb_spec(tmp_path), Settings(), RenderOptions(driver="raw_exec"))
        body["Job"]["TaskGroups"][0]["Count"] = 1
        body["Job"]["TaskGroups"][0]["Tasks"][0]["Templates"][0]["EmbeddedTmpl"] = template
        await client.register(body)
        await eventually_async(lambda: any(a["ClientStatus"] == "failed" for a in nomad.allocs.values()))
        (alloc,) = nomad.allocs.values()
        message = alloc["TaskStates"]["worker"]["Events"][-1]["DisplayMessage"]
        assert (
            message.startswith("Template failed: the Nomad double renders only env templates") and template in message
        )
        await client.close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    assert openssl, "the TLS test needs the `openssl` binary to make a certificate for 127.0.0.1"
    cert, key = directory / "ca.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_certificates_are_checked_against_nomad_cacert(tmp_path: Path) -> None:
    """python-nomad sends its own `verify` (default False) with every request, which would switch
    certificate checks off for register / read / variables: the client passes NOMAD_CACERT."""
    cert, key = self_signed_cert(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with NomadDouble() as nomad:
        nomad._server.socket = context.wrap_socket(nomad._server.socket, server_side=True)
        address = nomad.address.replace("http://", "https://")
        unverified = NomadClient(address, retries=0)
        with pytest.raises(NomadUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await unverified.get_variable("nomad/jobs/skiff-echo")
        with pytest.raises(NomadUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
            await unverified.get_job("skiff-echo")
        assert nomad.requests == []
        verified = NomadClient(address, retries=0, ca_cert=str(cert))
        await verified.put_variable("nomad/jobs/skiff-echo", {"worker_key": "k"})
        assert (await verified.get_variable("nomad/jobs/skiff-echo") or {})["Items"] == {"worker_key": "k"}
        assert await verified.get_job("skiff-echo") is None
        for client in (unverified, verified):
            await client.close()


async def test_replace_stops_the_allocation_and_nomad_places_one_under_its_name(nomad: NomadDouble) -> None:
    """stopPod: POST /v1/allocation/:id/stop; the count stays and the scheduler migrates it."""
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    await orch.scale("echo", 2)
    await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 2)
    old = sorted(nomad.live_allocs("skiff-echo"), key=lambda a: a["_index"])[0]
    await orch.replace("echo", old["ID"])
    stopped = nomad.allocs[old["ID"]]
    assert stopped["DesiredStatus"] == "stop" and stopped["DesiredDescription"] == "alloc is being migrated"
    new = nomad.allocs[stopped["NextAllocation"]]
    assert new["Name"] == old["Name"] and new["DesiredStatus"] == "run"
    assert nomad.jobs["skiff-echo"]["TaskGroups"][0]["Count"] == 2
    live = {a["ID"] for a in nomad.live_allocs("skiff-echo")}
    assert len(live) == 2 and new["ID"] in live and old["ID"] not in live
    # An allocation that is gone already: nothing to do.
    await orch.replace("echo", "00000000-0000-0000-0000-000000000000")
    await orch.close()


async def test_replace_without_alloc_lifecycle_is_a_clear_error() -> None:
    caps = {"submit-job", "read-job", "scale-job", "variables:read", "variables:write", "variables:destroy"}
    with NomadDouble(acl_tokens={"no-lifecycle": caps}) as nomad:
        orch = orchestrator(nomad.address, token="no-lifecycle")
        await orch.apply(spec())
        await orch.scale("echo", 1)
        await eventually_async(lambda: len(nomad.live_allocs("skiff-echo")) == 1)
        [alloc] = nomad.live_allocs("skiff-echo")
        with pytest.raises(NomadPermissionDenied, match=r"Permission denied.*alloc-lifecycle"):
            await orch.replace("echo", alloc["ID"])
        assert nomad.allocs[alloc["ID"]]["DesiredStatus"] == "run"
        await orch.close()


# What the client records before the task runs (task_runner.go Run, task_dir_hook.go).
SETUP_EVENTS = {"Received", "Task Setup"}
CRASHER = """import sys
print("loading weights", flush=True)
print("FileNotFoundError: /models/missing", file=sys.stderr, flush=True)
sys.exit(3)
"""


def crash_spec(tmp_path: Path) -> EndpointSpec:
    script = tmp_path / "crash.py"
    script.write_text(CRASHER)
    return EndpointSpec.model_validate(
        {"name": "broken", "command": [sys.executable, str(script)], "scaling": {"max_workers": 1}}
    )


async def test_a_task_that_exits_non_zero_is_a_crash_loop_with_its_exit_code_backoff_and_stderr(
    tmp_path: Path,
) -> None:
    """Nomad restarts the task in place (RestartPolicy Delay 5s, mode "delay"): the allocation's
    TaskState shows "Terminated" with ExitCode 3, then "Restarting" with the StartDelay."""
    with NomadDouble(run_tasks=True) as nomad:
        orch = orchestrator(nomad.address, render_options=RenderOptions(driver="raw_exec"))
        await orch.apply(crash_spec(tmp_path))
        await orch.scale("broken", 1)

        for _ in range(150):  # the controller lists the workers on each pass
            await orch.workers("broken")
            if orch.trouble("broken") is not None:
                break
            await asyncio.sleep(0.1)
        trouble = orch.trouble("broken")
        assert trouble is not None and trouble.kind == "crash_loop" and trouble.exit_code == 3
        (alloc,) = nomad.live_allocs("skiff-broken")
        assert trouble.worker_id == alloc["ID"] and "exited with code 3" in trouble.message
        assert trouble.output == ("FileNotFoundError: /models/missing",)
        assert trouble.restart_at is not None and 5.0 <= trouble.restart_at - trouble.at <= 6.3
        events = [e for e in alloc["TaskStates"]["worker"]["Events"] if e["Type"] not in SETUP_EVENTS]
        assert [e["Type"] for e in events][:3] == ["Started", "Terminated", "Restarting"]
        assert events[2]["RestartReason"] == "Restart within policy" and alloc["TaskStates"]["worker"]["Restarts"] >= 1
        # The same allocation runs the task again after the delay (its stderr appended).
        await eventually_async(lambda: nomad.log_text(alloc["ID"]).count("FileNotFoundError") >= 2, timeout=15)
        assert [a["ID"] for a in nomad.live_allocs("skiff-broken")] == [alloc["ID"]]
        await orch.close()


async def test_a_restart_policy_without_attempts_fails_the_allocation_with_not_restarting(tmp_path: Path) -> None:
    """restarts.go: Attempts 0 -> "Not Restarting" ("Policy allows no restarts"), the task fails."""
    with NomadDouble(run_tasks=True) as nomad:
        client = NomadClient(nomad.address, retries=0)
        payload = render_job(crash_spec(tmp_path), Settings(), RenderOptions(driver="raw_exec"))
        payload["Job"]["TaskGroups"][0]["RestartPolicy"]["Attempts"] = 0
        payload["Job"]["TaskGroups"][0]["Count"] = 1
        payload["Job"]["TaskGroups"][0]["Tasks"][0]["Templates"] = []
        await client.register(payload)
        await eventually_async(lambda: any(a["ClientStatus"] == "failed" for a in nomad.allocs.values()), timeout=15)
        alloc = next(a for a in nomad.allocs.values() if a["ClientStatus"] == "failed")
        events = [e for e in alloc["TaskStates"]["worker"]["Events"] if e["Type"] not in SETUP_EVENTS]
        assert [e["Type"] for e in events] == ["Started", "Terminated", "Not Restarting"]
        assert events[1]["ExitCode"] == 3 and events[2]["RestartReason"] == "Policy allows no restarts"
        assert alloc["TaskStates"]["worker"]["Restarts"] == 0
        await client.close()


def test_a_crash_loop_ends_once_the_task_has_run_healthy_and_a_stopped_allocation_is_no_crash() -> None:
    def event(kind: str, at_s: float, **fields: Any) -> dict[str, Any]:
        return {"Type": kind, "Time": int(at_s * S), **fields}

    def alloc(desired: str, *events: dict[str, Any]) -> dict[str, Any]:
        return {"ID": "a1", "DesiredStatus": desired, "TaskStates": {"worker": {"Restarts": 1, "Events": list(events)}}}

    crashed = [
        event("Started", 1000.0),
        event("Terminated", 1001.0, ExitCode=2),
        event("Restarting", 1001.0, StartDelay=5 * S, DisplayMessage="Task restarting in 5s"),
        event("Started", 1006.0),
    ]
    crash = latest_crash([alloc("run", *crashed)], "worker", now=1030.0)
    assert crash is not None and crash.exit_code == 2 and crash.restart_at == 1006.0
    assert "Task restarting in 5s" in crash.message()
    assert latest_crash([alloc("run", *crashed)], "worker", now=1006.0 + HEALTHY_RUN_S + 1) is None
    assert latest_crash([alloc("stop", *crashed)], "worker", now=1030.0) is None
    assert (
        latest_crash(
            [alloc("run", event("Started", 1000.0), event("Terminated", 1001.0, ExitCode=0))], "worker", now=1002.0
        )
        is None
    )


def prepull_registrations(nomad: NomadDouble) -> list[dict[str, Any]]:
    return [
        b["Job"]
        for m, p, b in nomad.requests
        if p == "/v1/jobs" and b is not None and b["Job"]["ID"] == "skiff-prepull.echo"
    ]


async def test_with_prepull_a_new_or_changed_image_is_pulled_on_every_node_and_an_unchanged_one_is_not() -> None:
    nodes = [
        FakeNode("gpu-1", {("nvidia", "gpu", "NVIDIA L4"): 1}),
        FakeNode("gpu-2", {("nvidia", "gpu", "NVIDIA L4"): 1}),
    ]
    with NomadDouble(nodes=nodes) as nomad:
        settings = Settings(nomad_addr=nomad.address, prepull=True)
        client = NomadClient(nomad.address, retries=1, backoff_s=0.05)
        orch = NomadOrchestrator(settings, client=client, worker_key=key_of)
        await orch.apply(spec())
        job = nomad.jobs["skiff-prepull.echo"]
        assert job["Type"] == "sysbatch" and job["Meta"]["image"] == "ghcr.io/acme/echo:1"

        def pulls(version: int) -> list[dict[str, Any]]:
            with nomad.lock:
                return [
                    a
                    for a in nomad.allocs.values()
                    if a["JobID"] == "skiff-prepull.echo" and a["JobVersion"] == version
                ]

        # One allocation per node (the sysbatch scheduler ignores Count), each run to completion.
        await eventually_async(lambda: sorted(a["ClientStatus"] for a in pulls(0)) == ["complete", "complete"])
        assert sorted(a["NodeName"] for a in pulls(0)) == ["gpu-1", "gpu-2"]
        # A change that keeps the image (and a controller restart re-applying it) pulls nothing again.
        await orch.apply(spec(env={"NEW": "1"}))
        await NomadOrchestrator(settings, client=NomadClient(nomad.address), worker_key=key_of).apply(spec())
        assert len(prepull_registrations(nomad)) == 1 and len(pulls(0)) == 2
        # A new image re-registers it: a new version, pulled again on both nodes.
        await orch.apply(spec(image="ghcr.io/acme/echo:2"))
        assert len(prepull_registrations(nomad)) == 2
        assert nomad.jobs["skiff-prepull.echo"]["Version"] == 1
        await eventually_async(lambda: sorted(a["ClientStatus"] for a in pulls(1)) == ["complete", "complete"])
        assert len(pulls(0)) == 2  # the finished pulls of the old image are not run again
        await orch.remove("echo")
        assert "skiff-prepull.echo" not in nomad.jobs and "skiff-echo" not in nomad.jobs
        await orch.close()


async def test_without_prepull_or_without_docker_no_pull_job_is_registered(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    raw = NomadOrchestrator(
        Settings(nomad_addr=nomad.address, prepull=True),
        client=NomadClient(nomad.address),
        worker_key=key_of,
        render_options=RenderOptions(driver="raw_exec"),
    )
    await raw.apply(spec(name="raw"))
    assert not prepull_registrations(nomad) and not [j for j in nomad.jobs if j.startswith("skiff-prepull.")]
    await orch.close()
    await raw.close()


async def test_a_workers_start_and_image_pull_come_from_its_task_events() -> None:
    with NomadDouble(image_pull_s=0.3) as nomad:
        orch = orchestrator(nomad.address)
        await orch.apply(spec())
        await orch.scale("echo", 1)
        await eventually_async(lambda: [a["ClientStatus"] for a in nomad.live_allocs("skiff-echo")] == ["running"])
        [alloc] = nomad.live_allocs("skiff-echo")
        events = nomad.allocs[alloc["ID"]]["TaskStates"]["worker"]["Events"]
        assert [e["Type"] for e in events] == ["Received", "Task Setup", "Driver", "Started"]
        assert events[2]["DriverMessage"] == "Downloading image"
        assert events[2]["Details"] == {"image": "ghcr.io/acme/echo:1"}
        [worker] = await orch.workers("echo")
        assert worker.started_at == events[3]["Time"] / 1e9 and worker.launched_at <= worker.started_at
        assert worker.pull_s == pytest.approx((events[3]["Time"] - events[2]["Time"]) / 1e9) and worker.pull_s >= 0.3
        # The parts add up to the cold start: placement is what precedes the pull.
        ready_at = worker.started_at + 2.0
        parts = cold_start_parts(worker.launched_at, worker.started_at, worker.pull_s, ready_at)
        assert parts.pull_s == worker.pull_s and parts.start_to_take_s == 2.0
        assert parts.placement_s is not None
        assert abs(parts.placement_s + worker.pull_s + 2.0 - (ready_at - worker.launched_at)) < 1e-6
        await orch.close()


async def test_without_a_pull_event_the_pull_is_unknown_and_before_start_nothing_is_known(nomad: NomadDouble) -> None:
    orch = orchestrator(nomad.address)
    await orch.apply(spec())
    await orch.scale("echo", 1)
    await eventually_async(lambda: [a["ClientStatus"] for a in nomad.live_allocs("skiff-echo")] == ["running"])
    [worker] = await orch.workers("echo")
    assert worker.started_at is not None and worker.pull_s is None
    # A pending allocation (no "Started" yet) has no parts.
    assert cold_start_parts(worker.launched_at, None, None, None).model_dump() == {
        "placement_s": None,
        "pull_s": None,
        "start_to_take_s": None,
    }
    await orch.close()
