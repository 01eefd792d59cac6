"""Cluster mode end to end: `skiff controller` drives the Nomad double, `skiff gateway` serves.

Real processes on 127.0.0.1: the Nomad double runs each allocation's raw_exec task as a local
subprocess with the environment Nomad gives it (NOMAD_ALLOC_ID is the worker id) and registers
load_balancer services in the Consul double, whose HTTP checks probe the workers. The controller
(SKIFF_ORCHESTRATOR=nomad, SKIFF_DISCOVERY=consul: Consul session leader lock) and one gateway
(Consul discovery for /lb/) share a queue and store; SQLite in a shared state dir is enough here,
since what is under test is the Nomad/Consul path (the SQS/Redis path has its own replica tests).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.doubles.consul import ConsulDouble
from tests.support.doubles.nomad import NomadDouble
from tests.support.doubles.tls import self_signed_cert
from tests.support.stack import REPO, SKIFF, TEST_KEY, endpoint_hcl, free_port
from tests.support.wait import eventually

ECHO = "tests/workers/skiff_async_echo.py"
# A load_balancer worker with its API on $PORT and GET /ping on $PORT_HEALTH (Runpod's two
# ports; the rendered Nomad job gives each a dynamic port and checks the health one).
LB_WORKER = "tests/workers/lb_plain.py"
ENDPOINTS = {
    # request_count with target 1: one worker per job, up to 3; idle workers leave after 1 s.
    "echo.hcl": endpoint_hcl(
        "echo",
        ECHO,
        python=sys.executable,
        scaling={"min_workers": 0, "max_workers": 3, "idle_timeout": "1s", "scaler": "request_count", "target": 1},
    ),
    "web.hcl": endpoint_hcl(
        "web", LB_WORKER, python=sys.executable, type="load_balancer", scaling={"min_workers": 2, "max_workers": 2}
    ),
    # A worker written with the official runpod SDK: on refresh_worker it only sends stopPod.
    "fresh.hcl": endpoint_hcl(
        "fresh",
        "tests/workers/runpod_async_echo.py",
        python=sys.executable,
        scaling={"min_workers": 1, "max_workers": 1},
    ),
    # Scales from zero on held requests: the controller learns of them only from the gateway's
    # load reports in the shared store (it is another process).
    "web0.hcl": endpoint_hcl(
        "web0",
        LB_WORKER,
        python=sys.executable,
        type="load_balancer",
        scaling={"min_workers": 0, "max_workers": 1, "idle_timeout": "1s"},
    ),
}


@dataclass
class Cluster:
    nomad: NomadDouble
    consul: ConsulDouble
    gateway_url: str
    controller_url: str
    logs: Path

    def client(self, timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(
            base_url=self.gateway_url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=timeout, trust_env=False
        )

    def output(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(self.logs.glob("*.log")))


def eventually_cluster(what: str, cond: Callable[[], bool], timeout: float, cluster: Cluster | None = None) -> None:
    eventually(cond, timeout=timeout, what=what, context=cluster.output if cluster else str)


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def _get_json(url: str) -> dict[str, object] | None:
    try:
        body = httpx.get(url, timeout=2, trust_env=False).json()
    except (httpx.HTTPError, ValueError):
        return None
    return body if isinstance(body, dict) else None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster-nomad")
    endpoints = root / "endpoints"
    endpoints.mkdir()
    for name, text in ENDPOINTS.items():
        (endpoints / name).write_text(text)
    logs = root / "logs"
    logs.mkdir()
    gateway_port, controller_port = free_port(), free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    with ConsulDouble() as consul, NomadDouble(run_tasks=True, consul=consul, check_interval_cap_s=0.2) as nomad:
        env = {
            **os.environ,
            "SKIFF_API_KEY": TEST_KEY,
            "SKIFF_STATE_DIR": str(root / "state"),
            "SKIFF_TAKE_WAIT_S": "2",
            "SKIFF_LB_HOLD_S": "10",
            "SKIFF_DISCOVERY": "consul",
            "SKIFF_CONSUL_ADDR": consul.address,
            "SKIFF_LOG_LEVEL": "INFO",
        }
        gateway = _start(
            [SKIFF, "gateway", "--endpoints", str(endpoints), "--port", str(gateway_port)], env, logs / "gateway.log"
        )
        controller_env = {
            **env,
            "SKIFF_ORCHESTRATOR": "nomad",
            "SKIFF_NOMAD_ADDR": nomad.address,
            "SKIFF_PUBLIC_URL": gateway_url,
        }
        controller = _start(
            [SKIFF, "controller", "--endpoints", str(endpoints), "--port", str(controller_port)],
            controller_env,
            logs / "controller.log",
        )
        cluster = Cluster(nomad, consul, gateway_url, f"http://127.0.0.1:{controller_port}", logs)
        try:
            eventually_cluster("the gateway", lambda: _get_json(f"{gateway_url}/healthz") is not None, 30, cluster)
            eventually_cluster(
                "the controller to lead",
                lambda: (_get_json(f"{cluster.controller_url}/healthz") or {}).get("leader") is True,
                30,
                cluster,
            )
            yield cluster
        finally:
            _stop(controller)
            _stop(gateway)


def _live(cluster: Cluster, endpoint: str) -> list[dict[str, object]]:
    return cluster.nomad.live_allocs(f"skiff-{endpoint}")


def test_controller_leads_through_a_consul_session_and_registers_one_job_per_endpoint(cluster: Cluster) -> None:
    # The leader lock is a Consul session holding the KV key (not a file in the state dir).
    entry = cluster.consul.kv.get("skiff/controller/leader")
    assert entry is not None and entry.get("Session") in cluster.consul.sessions
    every = ["skiff-echo", "skiff-fresh", "skiff-web", "skiff-web0"]
    eventually_cluster("every endpoint registered", lambda: sorted(cluster.nomad.jobs) == every, 20, cluster)
    task = cluster.nomad.jobs["skiff-echo"]["TaskGroups"][0]["Tasks"][0]
    assert task["Driver"] == "raw_exec" and task["Env"]["RUNPOD_POD_ID"] == "${NOMAD_ALLOC_ID}"
    assert task["Env"]["RUNPOD_WEBHOOK_GET_JOB"].startswith(f"{cluster.gateway_url}/v2/echo/job-take/")


def test_jobs_complete_through_the_gateway_scaling_0_n_0_without_stopping_busy_workers(cluster: Cluster) -> None:
    eventually_cluster("echo to start at zero workers", lambda: "skiff-echo" in cluster.nomad.jobs, 10, cluster)
    assert _live(cluster, "echo") == []
    seen: set[str] = set()
    peak = 0
    watching = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not watching.is_set():
            live = _live(cluster, "echo")
            peak = max(peak, len(live))
            seen.update(str(a["ID"]) for a in live)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with cluster.client() as client:
            # Short and long jobs together: the workers that ran short ones go idle and are drained
            # and stopped (a scale-down) while others are still busy with long ones.
            inputs = [{"n": n, "sleep": 0.3} for n in range(3)] + [{"n": n, "sleep": 6.0} for n in range(3, 5)]
            ids = [client.post("/v2/echo/run", json={"input": i}).json()["id"] for i in inputs]
            eventually_cluster("more than one worker", lambda: peak >= 2, 60, cluster)
            health = client.get("/v2/echo/health").json()
            assert health["jobs"]["inQueue"] + health["jobs"]["inProgress"] + health["jobs"]["completed"] >= 1
            results: dict[str, dict[str, Any]] = {}
            deadline = time.monotonic() + 90
            while len(results) < len(ids) and time.monotonic() < deadline:
                for job_id in ids:
                    if job_id not in results:
                        body = client.get(f"/v2/echo/status/{job_id}").json()
                        if body["status"] not in ("IN_QUEUE", "IN_PROGRESS"):
                            results[job_id] = body
                time.sleep(0.1)
            assert len(results) == len(ids), cluster.output()
            for inp, job_id in zip(inputs, ids, strict=True):
                body = results[job_id]
                assert body["status"] == "COMPLETED", body
                assert body["output"] == inp
                # Never delivered twice: no worker was stopped holding it.
                assert body.get("retries", 0) == 0, body
                assert body["workerId"] in seen  # the worker id is the Nomad allocation id
            # Back to zero: every allocation stopped once idle.
            eventually_cluster("echo to scale back to zero", lambda: _live(cluster, "echo") == [], 60, cluster)
            eventually_cluster(
                "the gateway to report no ready worker",
                lambda: client.get("/v2/echo/health").json()["workers"]["ready"] == 0,
                30,
                cluster,
            )
    finally:
        watching.set()
        watcher.join(5)
    assert peak >= 2
    events = cluster.nomad.scale_events["skiff-echo"]
    counts = [e["Count"] for e in events]
    assert max(counts) >= 2 and counts[-1] == 0, events
    assert all(e["Message"].startswith("skiff: scale echo") for e in events)
    # Every allocation was stopped by a Skiff scale-down (none crashed); none held a job (retries 0).
    for alloc_id in seen:
        alloc = cluster.nomad.allocs[alloc_id]
        assert alloc["DesiredStatus"] == "stop", alloc


def test_load_balancer_traffic_goes_only_to_passing_instances(cluster: Cluster) -> None:
    def passing() -> list[str]:
        with cluster.consul.lock:
            return sorted(
                i.id for i in cluster.consul.instances.values() if i.service == "skiff-web" and i.status == "passing"
            )

    eventually_cluster("two passing web instances", lambda: len(passing()) == 2, 60, cluster)
    services = passing()
    allocs = sorted(str(a["ID"]) for a in _live(cluster, "web"))
    # Consul service ids name their allocation; the worker's RUNPOD_POD_ID is that allocation id.
    assert sorted(next(a for a in allocs if a in s) for s in services) == allocs

    def whoami(n: int) -> list[str]:
        with cluster.client() as client:
            return [client.get("/lb/web/whoami").json()["worker"] for _ in range(n)]

    assert sorted(set(whoami(8))) == allocs
    # One instance's check turns critical: within a blocking-query round it gets no traffic.
    sick = services[0]
    cluster.consul.set_status(sick, "critical")
    sick_alloc = next(a for a in allocs if a in sick)
    time.sleep(0.5)
    assert set(whoami(10)) == {a for a in allocs if a != sick_alloc}
    cluster.consul.set_status(sick, "passing")
    eventually_cluster("the instance to get traffic again", lambda: sick_alloc in set(whoami(6)), 10, cluster)


def test_load_balancer_scales_from_zero_on_reports_and_never_stops_a_busy_worker(cluster: Cluster) -> None:
    eventually_cluster("web0 registered with no worker", lambda: "skiff-web0" in cluster.nomad.jobs, 20, cluster)
    eventually_cluster("web0 at zero", lambda: not _live(cluster, "web0"), 30, cluster)
    with cluster.client(timeout=60) as client:
        # Held by the gateway until the controller, told by the gateway's report, starts a worker.
        first = client.get("/lb/web0/whoami")
        assert first.status_code == 200, first.text
        worker = first.json()["worker"]
        assert [a["ID"] for a in _live(cluster, "web0")] == [worker]
        with client.stream("GET", "/lb/web0/stream?n=2") as stream:
            lines = stream.iter_lines()
            assert next(lines) == f"line 0 from {worker}"
            # Busy for several idle_timeouts (1 s) and controller passes: the worker must stay.
            time.sleep(3.5)
            assert [a["ID"] for a in _live(cluster, "web0")] == [worker], "a busy worker was stopped"
            assert client.post("/lb/web0/release").status_code == 200
            assert list(lines) == [f"line 1 from {worker}"]
    # Idle now: drained through the shared marks and stopped, back to zero.
    eventually_cluster("web0 back to zero", lambda: not _live(cluster, "web0"), 30, cluster)
    # And from zero again on the next request.
    with cluster.client(timeout=60) as client:
        again = client.get("/lb/web0/whoami")
        assert again.status_code == 200 and again.json()["worker"] != worker


def test_stop_pod_has_nomad_stop_the_allocation_and_place_a_replacement(cluster: Cluster) -> None:
    """A runpod-SDK worker returns {"refresh_worker": true}: the SDK sends stopPod with the result
    and stays up; the controller stops its allocation through Nomad's alloc stop, and Nomad puts
    a new allocation in its place (same name, the count unchanged)."""
    eventually_cluster("a fresh worker", lambda: len(_live(cluster, "fresh")) == 1, 60, cluster)
    with cluster.client(timeout=60) as client:
        first = client.post("/v2/fresh/runsync", json={"input": {"pid": True}}).json()
        assert first["status"] == "COMPLETED", first
        old = first["workerId"]
        refreshed = client.post("/v2/fresh/runsync", json={"input": {"refresh": True}}).json()
        assert refreshed["status"] == "COMPLETED" and refreshed["workerId"] == old, refreshed
        eventually_cluster(
            "the allocation to be stopped",
            lambda: cluster.nomad.allocs[old]["DesiredStatus"] == "stop",
            60,
            cluster,
        )
        stopped = cluster.nomad.allocs[old]
        assert stopped["DesiredDescription"] == "alloc is being migrated"
        assert ("POST", f"/v1/allocation/{old}/stop", None) in cluster.nomad.requests
        replacement = cluster.nomad.allocs[stopped["NextAllocation"]]
        assert replacement["Name"] == stopped["Name"]
        assert cluster.nomad.jobs["skiff-fresh"]["TaskGroups"][0]["Count"] == 1
        after = client.post("/v2/fresh/runsync", json={"input": {"pid": True}}).json()
        assert after["status"] == "COMPLETED" and after["workerId"] == replacement["ID"], after
        assert after["output"]["pid"] != first["output"]["pid"]


def test_skiff_status_against_the_controller(cluster: Cluster) -> None:
    """`skiff status` in cluster mode: the controller's /v1/status, behind the client key."""
    env = {**os.environ, "SKIFF_API_KEY": TEST_KEY}
    out = subprocess.run(
        [SKIFF, "status", "--url", cluster.controller_url], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert "echo" in out.stdout and "web" in out.stdout
    assert httpx.get(f"{cluster.controller_url}/v1/status", timeout=5, trust_env=False).status_code == 401


def test_skiff_status_splits_a_nomad_workers_cold_start_from_its_task_events(cluster: Cluster) -> None:
    """The controller reads the allocation's "Started" task event; raw_exec pulls no image."""
    eventually_cluster("a fresh worker", lambda: len(_live(cluster, "fresh")) == 1, 60, cluster)
    with cluster.client(timeout=60) as client:
        assert client.post("/v2/fresh/runsync", json={"input": {"pid": True}}).json()["status"] == "COMPLETED"
    auth = {"Authorization": f"Bearer {TEST_KEY}"}

    def parts() -> dict[str, Any] | None:
        doc = httpx.get(f"{cluster.controller_url}/v1/status", headers=auth, timeout=5, trust_env=False).json()
        fresh = next(e for e in doc["endpoints"] if e["name"] == "fresh")["workers"]
        split = [
            w["cold_start_parts"] for w in fresh if (w["cold_start_parts"] or {}).get("start_to_take_s") is not None
        ]
        return split[0] if split else None

    eventually_cluster(
        "the fresh worker's first take in the controller's view", lambda: parts() is not None, 20, cluster
    )
    split = parts()
    assert split is not None and split["pull_s"] is None
    assert split["placement_s"] >= 0 and split["start_to_take_s"] >= 0


CONTROLLER_CAPS = {
    "submit-job",
    "read-job",
    "scale-job",
    "alloc-lifecycle",
    "variables:read",
    "variables:write",
    "variables:destroy",
}


def test_the_controller_uses_nomads_own_variables_for_token_and_ca(tmp_path: Path) -> None:
    """`skiff controller` as nomad/controller.nomad.hcl runs it on a TLS + ACL cluster: the
    workload token arrives as NOMAD_TOKEN (client/taskenv/env.go) and the CA as NOMAD_CACERT;
    no SKIFF_NOMAD_* variable is set."""
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(ENDPOINTS["echo.hcl"])
    cert, key = self_signed_cert(tmp_path)
    with (
        ConsulDouble() as consul,
        NomadDouble(tls=(cert, key), acl_tokens={"workload-token": CONTROLLER_CAPS}) as nomad,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SKIFF_", "NOMAD_", "CONSUL_"))}
        env.update(
            {
                "SKIFF_API_KEY": TEST_KEY,
                "SKIFF_STATE_DIR": str(tmp_path / "state"),
                "SKIFF_ORCHESTRATOR": "nomad",
                "SKIFF_DISCOVERY": "consul",
                "SKIFF_PUBLIC_URL": "http://127.0.0.1:9",
                "CONSUL_HTTP_ADDR": consul.address,
                "NOMAD_ADDR": nomad.address,
                "NOMAD_TOKEN": "workload-token",
                "NOMAD_CACERT": str(cert),
            }
        )
        log = tmp_path / "controller.log"
        controller = _start([SKIFF, "controller", "--endpoints", str(endpoints)], env, log)
        try:
            eventually(
                lambda: "skiff-echo" in nomad.jobs,
                timeout=30,
                what="the controller to register skiff-echo over https with NOMAD_TOKEN",
                context=lambda: log.read_text(errors="replace"),
            )
            assert nomad.variable("nomad/jobs/skiff-echo") is not None
        finally:
            _stop(controller)
        assert "workload-token" not in log.read_text(errors="replace")
