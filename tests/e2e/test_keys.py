"""Client keys: created, listed and revoked with `skiff keys` against a running stack, each with a
scope and an optional endpoint list, effective without a restart; worker keys owe nothing to any
client key, so workers keep running whatever happens to client keys."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.services import MotoServer, RedisServer
from tests.support.stack import SKIFF, GatewayReplica, SkiffProcess, endpoint_hcl, stop_process
from tests.support.wait import eventually

ECHO = "tests/workers/skiff_async_echo.py"
# No crash is tested here: a worker slow to start on a busy machine must not be taken for a dead one.
PATIENT = {"SKIFF_WORKER_LOST_AFTER_S": "30"}


def skiff_keys(stack: SkiffProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SKIFF_API_KEY": stack.key}
    return subprocess.run(
        [SKIFF, "keys", *args, "--url", stack.url], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def two_endpoints(tmp_path: Path) -> Iterator[SkiffProcess]:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    for name in ("a", "b"):
        (endpoints / f"{name}.hcl").write_text(endpoint_hcl(name, ECHO, scaling={"min_workers": 1, "max_workers": 1}))
    stack = SkiffProcess(endpoints, tmp_path / "state", PATIENT)
    try:  # stopped even when it did not start in time: never left running
        stack.start(timeout=120)
        stack.wait_ready_workers("a")
        yield stack
    finally:
        stack.stop()


def test_read_only_key_scoped_to_one_endpoint_then_revoked(two_endpoints: SkiffProcess) -> None:
    stack = two_endpoints
    with stack.client() as admin:
        job = admin.post("/v2/a/runsync?wait=30000", json={"input": {"n": 1}}).json()
        assert job["status"] == "COMPLETED", job
        worker_before = job["workerId"]
        pids_before = sorted(stack.worker_pids())

    created = skiff_keys(stack, "create", "--read-only", "--endpoint", "a", "--name", "dashboard")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("skc_") and "not shown again" in created.stderr
    listed = skiff_keys(stack, "list")
    assert listed.returncode == 0 and "dashboard" in listed.stdout and "read" in listed.stdout
    assert key not in listed.stdout  # ids, never keys
    key_id = next(line.split()[0] for line in listed.stdout.splitlines() if "dashboard" in line)

    with stack.client(key) as reader:
        assert reader.get(f"/v2/a/status/{job['id']}").json()["output"] == {"n": 1}
        assert reader.get("/v2/a/health").status_code == 200
        for method, path in [
            ("POST", "/v2/a/run"),
            ("POST", "/v2/a/runsync"),
            ("POST", f"/v2/a/cancel/{job['id']}"),
            ("POST", "/v2/a/purge-queue"),
            ("GET", "/v2/b/health"),
            ("GET", f"/v2/b/status/{job['id']}"),
            ("POST", "/v2/b/run"),
            ("GET", "/v1/keys"),
            ("GET", "/v1/status"),
        ]:
            reply = reader.request(method, path, json={"input": 1})
            assert reply.status_code == 403, (method, path, reply.text)
            assert "error" in reply.json()

        revoked = skiff_keys(stack, "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        # On the gateway that revoked it: at once (other replicas: within SKIFF_KEY_CACHE_S).
        refused = reader.get(f"/v2/a/status/{job['id']}")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid API key"
    assert skiff_keys(stack, "revoke", key_id).returncode == 1  # already gone: a clear error
    assert key_id not in skiff_keys(stack, "list").stdout

    with stack.client() as admin:  # the admin key keeps working, and so do the same workers
        again = admin.post("/v2/a/runsync?wait=30000", json={"input": {"n": 2}}).json()
        assert again["status"] == "COMPLETED" and again["workerId"] == worker_before
        assert sorted(stack.worker_pids()) == pids_before
    assert key not in stack.output()  # keys are never logged


def test_read_write_key_runs_jobs_on_its_endpoints_only(two_endpoints: SkiffProcess) -> None:
    stack = two_endpoints
    created = skiff_keys(stack, "create", "-e", "a")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    with stack.client(key) as writer:
        done = writer.post("/v2/a/runsync?wait=30000", json={"input": {"w": 1}}).json()
        assert done["status"] == "COMPLETED" and done["output"] == {"w": 1}
        assert writer.post("/v2/b/run", json={"input": 1}).status_code == 403
        assert writer.get("/v1/keys").status_code == 403  # only the admin key manages keys
        # A client key is no worker key: the worker API refuses it.
        assert writer.get("/v2/a/job-take/a-someone").status_code == 401
    with httpx.Client(base_url=stack.url, timeout=10) as raw:
        bad = raw.post("/v1/keys", json={"scope": "admin"}, headers={"Authorization": f"Bearer {stack.key}"})
        assert bad.status_code == 400 and "scope" in bad.json()["error"]
        bad = raw.post("/v1/keys", json={"scope": "read", "endpoints": ["Not A Name"]}, headers=_auth(stack.key))
        assert bad.status_code == 400 and "endpoint" in bad.json()["error"]
        assert raw.delete("/v1/keys/nope", headers=_auth(stack.key)).status_code == 404
        forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")  # right id, wrong secret
        assert raw.get("/v2/a/health", headers=_auth(forged)).status_code == 401


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _replica_on(port_of: GatewayReplica, endpoints: Path, state: Path, env: dict[str, str]) -> GatewayReplica:
    """Another `skiff gateway` on the same port as `port_of` (which must have stopped)."""
    replica = GatewayReplica(endpoints, state, env)
    replica.port, replica.url = port_of.port, port_of.url
    replica.args[-1] = str(port_of.port)
    return replica


@pytest.mark.timeout(600)  # three processes start, one twice, on a machine other tests share
def test_rotating_the_admin_key_restarts_no_worker_and_revocation_reaches_every_replica(
    moto: MotoServer, redis: RedisServer, tmp_path: Path
) -> None:
    """A cluster: `skiff controller` (which holds no client key at all) runs the workers, and they
    talk to gateway A. A restarts with a new admin key: the same workers take its jobs, since
    their keys come from the store's worker secret. A key created through A works on replica B;
    revoked through A, B refuses it within SKIFF_KEY_CACHE_S."""
    run = uuid.uuid4().hex[:8]
    env = {
        **moto.env,
        "SKIFF_QUEUE": "sqs",
        "SKIFF_STORE": "redis",
        "SKIFF_REDIS_URL": redis.url(),
        "SKIFF_REDIS_PREFIX": f"k{run}:",
        "SKIFF_SQS_QUEUE_PREFIX": f"k{run}-",
        "SKIFF_KEY_CACHE_S": "1",
        # Gateway A is down a while between its two runs: its worker must not be taken for dead.
        "SKIFF_WORKER_LOST_AFTER_S": "300",
    }
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(endpoint_hcl("echo", ECHO, scaling={"min_workers": 1, "max_workers": 1}))
    a = GatewayReplica(endpoints, tmp_path / "state-a", env)
    controller_env = {k: v for k, v in {**os.environ, **env}.items() if k != "SKIFF_API_KEY"}
    controller_env["SKIFF_PUBLIC_URL"] = a.url
    controller_log = tmp_path / "controller.log"
    processes: list[GatewayReplica] = []
    controller: subprocess.Popen[bytes] | None = None
    try:
        processes.append(a.start(timeout=120))
        with controller_log.open("wb") as log:
            controller = subprocess.Popen(
                [SKIFF, "controller", "--endpoints", str(endpoints), "--state-dir", str(tmp_path / "state-c")],
                env=controller_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def ready_worker() -> str | None:
            with a.client() as client:
                body = client.post("/v2/echo/runsync?wait=5000", json={"input": {"probe": 1}}).json()
            return body.get("workerId") if body.get("status") == "COMPLETED" else None

        eventually(
            lambda: ready_worker() is not None,
            timeout=180,
            interval=1,
            what="a worker serving gateway A",
            context=lambda: controller_log.read_text(errors="replace"),
        )
        worker = ready_worker()

        a.stop()
        a2 = _replica_on(a, endpoints, tmp_path / "state-a2", env)
        a2.env["SKIFF_API_KEY"] = "sk_the_new_admin_key"
        processes.append(a2.start(timeout=120))
        with httpx.Client(base_url=a2.url, headers=_auth("sk_the_new_admin_key"), timeout=60) as on_a2:
            assert on_a2.get("/v2/echo/health").status_code == 200
            assert on_a2.get("/v2/echo/health", headers=_auth(a.env["SKIFF_API_KEY"])).status_code == 401
            # The worker that served the old A serves the new one: its key did not change.
            done = on_a2.post("/v2/echo/runsync?wait=60000", json={"input": {"via": "a2"}}).json()
            assert done["status"] == "COMPLETED" and done["workerId"] == worker, done

            b = GatewayReplica(endpoints, tmp_path / "state-b", env)
            processes.append(b.start(timeout=120))
            created = on_a2.post("/v1/keys", json={"scope": "read"})
            assert created.status_code == 201, created.text
            key, key_id = created.json()["key"], created.json()["id"]
            with httpx.Client(base_url=b.url, headers=_auth(key), timeout=30) as reader:
                assert reader.get(f"/v2/echo/status/{done['id']}").json()["status"] == "COMPLETED"
                assert on_a2.delete(f"/v1/keys/{key_id}").status_code == 200
                eventually(
                    lambda: reader.get("/v2/echo/health").status_code == 401,
                    timeout=1 + 2,  # SKIFF_KEY_CACHE_S, plus a poll and a request
                    what="the revoked key to be refused by the other replica",
                )
        assert controller.poll() is None, controller_log.read_text(errors="replace")
        assert "sk_the_new_admin_key" not in a2.output() and key not in b.output()
    finally:
        if controller is not None and controller.poll() is None:
            stop_process(controller, signal.SIGTERM, lambda: controller_log.read_text(errors="replace"))
        for process in processes:
            process.stop()
