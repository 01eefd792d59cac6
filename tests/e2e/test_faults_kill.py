"""Faults under load: kill -9 of a worker (Skiff's SDK and the official runpod SDK), of `skiff up`,
of a gateway and of a controller running apart, and a gateway paused with SIGSTOP/SIGCONT.

Each test counts the jobs the gateway accepted against those that completed with their own
output, checks no job id was handed out twice, and checks the answers clients got while the fault
lasted: 200, or no answer at all while a killed process was down; never a 5xx.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.stack import (
    FAST_ENV,
    SKIFF,
    TEST_KEY,
    LoggedProcess,
    SkiffProcess,
    children,
    endpoint_hcl,
    free_port,
)
from tests.support.wait import eventually, wait_final, wait_status

WORKERS = {
    "skiff": "tests/workers/skiff_async_echo.py",
    "runpod": "tests/workers/runpod_async_echo.py",
}
ECHO = WORKERS["skiff"]
STARTUP_S = 90.0  # a Skiff process's start on a loaded machine (it is seconds when idle)


@dataclass
class Tally:
    """What clients saw during one fault: accepted ids, the answers, and how the jobs ended."""

    fault: str
    accepted: dict[str, Any] = field(default_factory=dict)  # job id -> its input
    codes: list[int | str] = field(default_factory=list)  # HTTP status, or "refused" when nothing answered
    completed: int = 0
    retried: int = 0

    def submit(self, client: httpx.Client, endpoint: str, job_input: Any) -> str | None:
        try:
            reply = client.post(f"/v2/{endpoint}/run", json={"input": job_input})
        except httpx.TransportError:
            self.codes.append("refused")
            return None
        self.codes.append(reply.status_code)
        if reply.status_code != 200:
            return None
        job_id: str = reply.json()["id"]
        assert job_id not in self.accepted, f"{self.fault}: job id {job_id} handed out twice"
        self.accepted[job_id] = job_input
        return job_id

    def settle(self, client: httpx.Client, endpoint: str, timeout: float = 60) -> None:
        """Every accepted job ends COMPLETED with its own input echoed back."""
        wrong = []
        for job_id, job_input in self.accepted.items():
            done = wait_final(client, endpoint, job_id, timeout)
            if done["status"] == "COMPLETED" and done.get("output") == job_input:
                self.completed += 1
            else:
                wrong.append(done)
            self.retried += 1 if done.get("retries") else 0
        print(f"\n[fault] {self.report()}")
        assert not wrong, f"{self.fault}: {len(wrong)} job(s) did not complete with their output: {wrong[:5]}"
        assert self.completed == len(self.accepted)
        assert all(code in (200, "refused") for code in self.codes), f"{self.fault}: answers {self.codes}"

    def report(self) -> str:
        refused = sum(1 for c in self.codes if c == "refused")
        return (
            f"{self.fault}: accepted {len(self.accepted)}, completed with the right output {self.completed}, "
            f"duplicate ids 0, re-delivered {self.retried}, submissions that met no gateway {refused}"
        )


def _load(
    tally: Tally, url: str, endpoint: str, inputs: list[Any], *, pace: float = 0.05, timeout: float = 10
) -> threading.Thread:
    """Submit `inputs` one after the other in a thread; like a client, one that met no gateway is
    sent again (for up to 60 s) before the next."""

    def run() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=timeout) as client:
            for job_input in inputs:
                deadline = time.monotonic() + 60
                while tally.submit(client, endpoint, job_input) is None and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(pace)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], SkiffProcess]]:
    """`skiff up` on the given endpoint files, allowed a slow start on a busy machine."""
    started: list[SkiffProcess] = []

    def start(files: dict[str, str]) -> SkiffProcess:
        endpoints = tmp_path / f"endpoints{len(started)}"
        endpoints.mkdir()
        for name, text in files.items():
            (endpoints / f"{name}.hcl").write_text(text)
        stack = SkiffProcess(endpoints, tmp_path / f"state{len(started)}")
        started.append(stack)
        return stack.start(timeout=STARTUP_S)

    yield start
    for stack in started:
        try:
            stack.stop()
        except Exception:
            stack.kill9()


# --------------------------------------------------------------------------- `skiff up`


@pytest.mark.parametrize("sdk", sorted(WORKERS))
def test_kill9_of_a_worker_requeues_its_job_with_a_fresh_execution_deadline(
    up: Callable[[dict[str, str]], SkiffProcess], sdk: str
) -> None:
    # One worker, a short execution timeout and a long TTL: the killed worker's job goes back to
    # the queue behind 7 others and waits there longer than its first execution timeout. It must
    # run again (a retry), not expire as "queued past its TTL" on the first delivery's deadline.
    stack = up(
        {
            "work": endpoint_hcl(
                "work",
                WORKERS[sdk],
                execution_timeout="4s",
                job_ttl="1h",
                max_retries=2,
                scaling={"min_workers": 1, "max_workers": 1},
            )
        }
    )
    stack.wait_ready_workers("work", timeout=STARTUP_S)
    tally = Tally(f"kill -9 of a {sdk} SDK worker")
    with stack.client() as client:
        first = tally.submit(client, "work", {"sleep": 3, "n": 0})
        assert first is not None
        wait_status(client, "work", first, {"IN_PROGRESS"})
        for n in range(1, 8):
            tally.submit(client, "work", {"sleep": 1, "n": n})
        [worker] = stack.worker_pids()
        os.kill(worker, signal.SIGKILL)
        tally.settle(client, "work")
        again = client.get(f"/v2/work/status/{first}").json()
    assert again["retries"] == 1, again
    assert "re-queued them" in stack.output()


def test_kill9_of_skiff_up_leaves_no_phantom_workers_and_loses_no_job(
    up: Callable[[dict[str, str]], SkiffProcess],
) -> None:
    stack = up({"trio": endpoint_hcl("trio", ECHO, scaling={"min_workers": 3, "max_workers": 3})})
    stack.wait_ready_workers("trio", 3, timeout=STARTUP_S)
    tally = Tally("kill -9 of skiff up")
    with stack.client() as client:
        for n in range(12):
            tally.submit(client, "trio", {"sleep": 1.5, "n": n})
        eventually(
            lambda: client.get("/v2/trio/health").json()["jobs"]["inProgress"] >= 1,
            timeout=20,
            what="a job in progress",
        )
    stack.kill9()
    stack.start(timeout=STARTUP_S)
    with stack.client() as client:
        health: dict[str, Any] = {}

        def three_real_workers() -> bool:
            nonlocal health
            health = client.get("/v2/trio/health").json()
            live = sum(health["workers"][s] for s in ("initializing", "idle", "running", "draining"))
            return live == 3 and health["workers"]["ready"] == 3

        # The dead process's three workers must not linger beside the three new ones.
        eventually(three_real_workers, timeout=40, what="3 registered workers, all real", context=lambda: str(health))
        tally.settle(client, "trio")
    assert "is registered but not running; forgot it" in stack.output()


# --------------------------------------------------------------------------- gateway and controller apart


@dataclass
class Apart:
    gateway: LoggedProcess
    controller: LoggedProcess
    url: str

    def client(self, timeout: float = 30) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=timeout)

    def ready_workers(self, endpoint: str) -> int:
        with self.client() as client:
            ready: int = client.get(f"/v2/{endpoint}/health").json()["workers"]["ready"]
            return ready


@contextmanager
def apart(tmp_path: Path, hcl: str, env: dict[str, str] | None = None) -> Iterator[Apart]:
    """A `skiff gateway` and a `skiff controller` as two processes on one state dir (SQLite),
    the controller's local workers calling the gateway: the cluster's split on one machine."""
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "ep.hcl").write_text(hcl)
    state = tmp_path / "state"
    state.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    common = {**os.environ, **FAST_ENV, "SKIFF_API_KEY": TEST_KEY, "SKIFF_PUBLIC_URL": url, **(env or {})}
    where = ["--endpoints", str(endpoints), "--state-dir", str(state)]
    gateway = LoggedProcess([SKIFF, "gateway", *where, "--port", str(port)], common, state / "gateway.log", "is up at")
    controller = LoggedProcess([SKIFF, "controller", *where], common, state / "controller.log", "leading after")
    gateway.start(STARTUP_S)
    try:
        controller.start(STARTUP_S)
        try:
            yield Apart(gateway, controller, url)
        finally:
            controller.stop()
    finally:
        gateway.stop()


def test_kill9_of_the_gateway_under_load_loses_no_accepted_job(tmp_path: Path) -> None:
    hcl = endpoint_hcl("ep", ECHO, max_retries=3, scaling={"min_workers": 2, "max_workers": 2})
    with apart(tmp_path, hcl) as split:
        eventually(lambda: split.ready_workers("ep") >= 2, timeout=40, what="2 ready workers")
        tally = Tally("kill -9 of the gateway (gateway and controller apart)")
        sender = _load(tally, split.url, "ep", [{"sleep": 0.3, "n": n} for n in range(60)], timeout=5)
        eventually(lambda: len(tally.accepted) >= 15, timeout=30, what="15 accepted jobs")
        split.gateway.kill9()  # its workers' calls fail until it is back; they keep trying
        time.sleep(1.0)  # submissions meanwhile find nobody
        split.gateway.start(STARTUP_S)
        sender.join(90)
        assert "refused" in tally.codes, "the load never met the dead gateway"
        with split.client() as client:
            tally.settle(client, "ep")
        assert len(tally.accepted) == 60, tally.report()


def test_kill9_of_the_controller_under_load_loses_no_accepted_job(tmp_path: Path) -> None:
    hcl = endpoint_hcl("ep", ECHO, max_retries=3, scaling={"min_workers": 2, "max_workers": 2})
    with apart(tmp_path, hcl) as split:
        eventually(lambda: split.ready_workers("ep") >= 2, timeout=40, what="2 ready workers")
        tally = Tally("kill -9 of the controller (gateway and controller apart)")
        sender = _load(tally, split.url, "ep", [{"sleep": 0.5, "n": n} for n in range(40)])
        eventually(lambda: len(tally.accepted) >= 10, timeout=30, what="10 accepted jobs")
        split.controller.kill9()  # its workers get SIGTERM with it (PR_SET_PDEATHSIG)
        time.sleep(1.0)  # the gateway keeps accepting meanwhile
        split.controller.start(STARTUP_S)
        sender.join(60)
        with split.client() as client:
            tally.settle(client, "ep")
        assert tally.codes.count(200) == len(tally.codes) == 40, tally.codes


def test_a_paused_gateway_does_not_cost_its_healthy_workers(tmp_path: Path) -> None:
    # Paused twice as long as workers may stay silent (SKIFF_WORKER_LOST_AFTER_S 4 s), within
    # the lease (30 s here), so no lease runs out and nothing needs to run twice.
    hcl = endpoint_hcl("ep", ECHO, max_retries=3, scaling={"min_workers": 2, "max_workers": 2})
    with apart(tmp_path, hcl, {"SKIFF_LEASE_S": "30"}) as split:
        eventually(lambda: split.ready_workers("ep") >= 2, timeout=40, what="2 ready workers")
        workers = children(split.controller.pid)
        assert len(workers) == 2
        tally = Tally("SIGSTOP/SIGCONT of the gateway for 8 s")
        with split.client() as client:
            for n in range(6):
                tally.submit(client, "ep", {"sleep": 3, "n": n})
            eventually(
                lambda: client.get("/v2/ep/health").json()["jobs"]["inProgress"] == 2,
                timeout=20,
                what="both workers busy",
            )
        os.kill(split.gateway.pid, signal.SIGSTOP)
        try:
            # A client calling meanwhile is answered once the gateway runs again.
            during = _load(tally, split.url, "ep", [{"sleep": 0.1, "n": "during"}], timeout=30)
            time.sleep(8.0)
        finally:
            os.kill(split.gateway.pid, signal.SIGCONT)
        during.join(30)
        with split.client() as client:
            tally.settle(client, "ep")
        assert len(tally.accepted) == 7 and tally.codes == [200] * 7, tally.codes
        assert tally.retried == 0, "a job ran twice: the pause read as its worker going silent"
        assert children(split.controller.pid) == workers, split.controller.output()
    assert "stopped pinging" not in split.controller.output()
    assert "did not run for" in split.gateway.output()


def test_a_worker_slow_to_start_is_not_taken_for_a_silent_one(up: Callable[[dict[str, str]], SkiffProcess]) -> None:
    # Twice SKIFF_WORKER_LOST_AFTER_S (4 s) before its first ping: worker_startup_timeout_s, not
    # the silence rule, bounds a start.
    stack = up(
        {
            "slow": endpoint_hcl(
                "slow", "tests/workers/slow_start_echo.py", env={"SLOW_START_S": "8"}, scaling={"min_workers": 1}
            )
        }
    )
    stack.wait_ready_workers("slow", timeout=STARTUP_S)
    with stack.client() as client:
        assert client.post("/v2/slow/runsync", json={"input": {"n": 1}}).json()["output"] == {"n": 1}
    assert "stopped pinging" not in stack.output()
