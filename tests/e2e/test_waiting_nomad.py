"""Why a job waits in a cluster. `skiff controller` drives the Nomad double and the gateway's
`/status` of the queued job carries Nomad's words: a GPU model no Nomad node has (the scale's
evaluation answers FailedTGAllocs, constraint "missing devices"), and a worker that exits at
once (the allocation's TaskState events: "Terminated" with the ExitCode, then "Restarting")."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.doubles.consul import ConsulDouble
from tests.support.doubles.nomad import NomadDouble
from tests.support.stack import REPO, SKIFF, TEST_KEY, free_port
from tests.support.wait import eventually

GPU_ENDPOINT = f"""endpoint "big" {{
  type    = "queue"
  command = ["{sys.executable}", "-u", "tests/workers/skiff_async_echo.py"]
  gpu {{
    count  = 1
    models = ["H100"]
  }}
  scaling {{
    max_workers = 1
  }}
}}
"""


CRASH_ENDPOINT = f"""endpoint "broken" {{
  type    = "queue"
  command = ["{sys.executable}", "-u", "tests/workers/crash_on_start.py"]
  scaling {{
    max_workers = 1
  }}
}}
"""


@contextmanager
def cluster(tmp_path: Path, name: str, hcl: str) -> Iterator[tuple[httpx.Client, Callable[[], str]]]:
    """A gateway and a controller on the Nomad double (one node, no GPU) serving one endpoint."""
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / f"{name}.hcl").write_text(hcl)
    logs = tmp_path / "logs"
    logs.mkdir()
    gateway_port = free_port()
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    procs: list[subprocess.Popen[bytes]] = []

    def output() -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')}" for p in sorted(logs.glob("*.log")))

    with ConsulDouble() as consul, NomadDouble(run_tasks=True, consul=consul) as nomad:
        env = {
            **os.environ,
            "SKIFF_API_KEY": TEST_KEY,
            "SKIFF_STATE_DIR": str(tmp_path / "state"),
            "SKIFF_DISCOVERY": "consul",
            "SKIFF_CONSUL_ADDR": consul.address,
        }
        controller_env = {
            **env,
            "SKIFF_ORCHESTRATOR": "nomad",
            "SKIFF_NOMAD_ADDR": nomad.address,
            "SKIFF_PUBLIC_URL": gateway_url,
        }
        for proc_name, args, e in (
            ("gateway", [SKIFF, "gateway", "--endpoints", str(endpoints), "--port", str(gateway_port)], env),
            ("controller", [SKIFF, "controller", "--endpoints", str(endpoints)], controller_env),
        ):
            with (logs / f"{proc_name}.log").open("ab") as out:
                procs.append(subprocess.Popen(args, cwd=REPO, env=e, stdin=subprocess.DEVNULL, stdout=out, stderr=out))
        try:
            client = httpx.Client(
                base_url=gateway_url, headers={"Authorization": f"Bearer {TEST_KEY}"}, trust_env=False
            )

            def up() -> bool:
                try:
                    return client.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    return False

            eventually(up, timeout=60, what="the gateway", context=output)
            yield client, output
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_a_job_no_nomad_node_can_place_waits_with_nomads_placement_failure(tmp_path: Path) -> None:
    with cluster(tmp_path, "big", GPU_ENDPOINT) as (client, output):
        job = client.post("/v2/big/run", json={"input": {}}).json()["id"]
        seen: dict[str, object] = {}

        def placement_reason() -> bool:
            seen.update(client.get(f"/v2/big/status/{job}").json())
            return (seen.get("waitingReason") or {}).get("code") == "placement_failed"  # type: ignore[union-attr]

        eventually(
            placement_reason, timeout=60, what="a placement_failed reason", context=lambda: f"{seen}\n{output()}"
        )
        assert seen["status"] == "IN_QUEUE"
        message = seen["waitingReason"]["message"]  # type: ignore[index]
        assert "missing devices" in message and "H100" in message, message


def test_a_job_waits_on_a_crash_looping_nomad_worker_with_its_exit_code_and_stderr(tmp_path: Path) -> None:
    with cluster(tmp_path, "broken", CRASH_ENDPOINT) as (client, output):
        job = client.post("/v2/broken/run", json={"input": {}}).json()["id"]
        seen: dict[str, object] = {}

        def crash_reason() -> bool:
            seen.update(client.get(f"/v2/broken/status/{job}").json())
            return (seen.get("waitingReason") or {}).get("code") == "crash_loop"  # type: ignore[union-attr]

        eventually(crash_reason, timeout=60, what="a crash_loop reason", context=lambda: f"{seen}\n{output()}")
        assert seen["status"] == "IN_QUEUE"
        reason: dict[str, object] = seen["waitingReason"]  # type: ignore[assignment]
        assert reason["exit_code"] == 3, reason
        assert "exited with code 3" in str(reason["message"]) and "crash-looping" in str(reason["message"]), reason
        # The restart policy's delay (5s plus jitter) is the backoff.
        assert isinstance(reason["backoff_s"], float) and 0 <= reason["backoff_s"] <= 6.25, reason
        assert any("crash_on_start" in line for line in reason["output"]), reason  # type: ignore[attr-defined]
