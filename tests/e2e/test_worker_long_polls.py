"""A worker's long poll ends with its connection: a job-take whose caller hung up leases nothing.

Run against a lone `skiff gateway` (no controller, no workers), so every job-take is ours.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import GatewayReplica, endpoint_hcl, worker_key


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayReplica]:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(endpoint_hcl("echo", "tests/workers/skiff_async_echo.py"))
    replica = GatewayReplica(endpoints, tmp_path / "state", {"SKIFF_TAKE_WAIT_S": "20"}).start()
    yield replica
    replica.stop()


def test_a_take_abandoned_by_its_worker_leases_no_job(gateway: GatewayReplica) -> None:
    key = worker_key(gateway.state_dir, "echo")
    with socket.create_connection(("127.0.0.1", gateway.port)) as ghost:
        ghost.sendall(
            f"GET /v2/echo/job-take/ghost?gpu=none&job_in_progress=0 HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: {key}\r\n\r\n".encode()
        )
        time.sleep(0.5)  # the take is parked in its 20 s long poll
    time.sleep(0.3)  # the gateway sees the hang-up
    with gateway.client() as client:
        job_id = client.post("/v2/echo/run", json={"input": {"n": 1}}).json()["id"]
        time.sleep(0.3)  # an abandoned poll still parked would have leased it by now
        assert client.get(f"/v2/echo/status/{job_id}").json()["status"] == "IN_QUEUE"
        taken = client.get("/v2/echo/job-take/live?gpu=none&job_in_progress=1", headers={"Authorization": key})
    assert taken.status_code == 200 and taken.json()["id"] == job_id
    assert "Traceback" not in gateway.output()
