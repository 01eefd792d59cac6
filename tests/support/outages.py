"""Backing services a test can stop and start again on the same port, and a loop that submits jobs
through the fault, for tests/e2e/test_faults_outage.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.support.services import AWS_TEST_ENV, free_port, stop_process, wait_for_port
from tests.support.stack import SkiffProcess


class Restartable:
    """A server process that keeps its port (and its files) across stop() and start()."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, self.proc, self.what)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)  # SIGTERM: redis-server writes its append-only file and exits


class RestartableRedis(Restartable):
    """A private redis-server with the append-only file on, kept in `data_dir` across restarts."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__("redis-server")
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH; install it (apt-get install -y redis-server)")
        self.binary = binary
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            self.binary,
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "everysec"),
        ]

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class RestartableMoto(Restartable):
    """moto's server; like any in-memory SQS double, a restart forgets every queue and message."""

    def __init__(self) -> None:
        super().__init__("moto server")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]

    @property
    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        return {**AWS_TEST_ENV, "SKIFF_SQS_ENDPOINT_URL": url, "SKIFF_AWS_REGION": AWS_TEST_ENV["AWS_DEFAULT_REGION"]}


@dataclass
class Refusal:
    n: int
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Submitter:
    """Posts `/run` with input {"n": n}, n = 0, 1, 2, ..., from a thread until stopped; keeps every
    answer: the ids of accepted jobs, and every refusal whole."""

    stack: SkiffProcess
    endpoint: str = "echo"
    accepted: dict[str, int] = field(default_factory=dict)  # job id -> n
    refusals: list[Refusal] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # ids handed out twice
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Submitter:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(120)

    def _run(self) -> None:
        with self.stack.client(timeout=60) as client:
            while not self._stop.is_set():
                n = self.sent
                self.sent += 1
                try:
                    response = client.post(f"/v2/{self.endpoint}/run", json={"input": {"n": n}})
                except httpx.HTTPError as exc:
                    self.refusals.append(Refusal(n, 0, {}, repr(exc)))
                    continue
                if response.status_code == 200:
                    job_id = response.json()["id"]
                    if job_id in self.accepted:
                        self.duplicates.append(job_id)
                    self.accepted[job_id] = n
                else:
                    self.refusals.append(Refusal(n, response.status_code, dict(response.headers), response.text))
                time.sleep(0.02)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for refusal in self.refusals:
            counts[refusal.status] = counts.get(refusal.status, 0) + 1
        return counts


def wait_all_completed(stack: SkiffProcess, accepted: dict[str, int], timeout: float = 120.0) -> dict[str, Any]:
    """Waits for every accepted job to be COMPLETED with its own input echoed; the endpoint's
    /health at the end."""
    deadline = time.monotonic() + timeout
    pending = dict(accepted)
    with stack.client() as client:
        while pending and time.monotonic() < deadline:
            for job_id, n in list(pending.items()):
                response = client.get(f"/v2/echo/status/{job_id}")
                if response.status_code != 200:
                    continue  # the status route may itself meet the tail of the fault
                body = response.json()
                if body["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                    continue
                assert body["status"] == "COMPLETED" and body.get("output") == {"n": n}, body
                del pending[job_id]
            time.sleep(0.2)
        assert not pending, f"{len(pending)} of {len(accepted)} accepted jobs did not complete: {list(pending)[:5]}"
        # A refused /run's record that the fault kept from being removed at once is removed by
        # the gateway's retries once the fault is over: give those a moment before /health counts.
        settle = time.monotonic() + 30
        while True:
            health: dict[str, Any] = client.get("/v2/echo/health").json()
            if (health["jobs"]["inQueue"] == 0 and health["jobs"]["inProgress"] == 0) or time.monotonic() > settle:
                return health
            time.sleep(0.5)
