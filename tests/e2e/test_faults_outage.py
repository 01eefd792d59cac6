"""Outages of what the gateway stands on, with `skiff up` under a steady stream of `/run`s:
Redis (the job store, append-only) restarted, the SQS server (moto) restarted, the state dir's
disk full (a small tmpfs). Each counts the jobs accepted and the jobs completed with their own
input echoed back, and asserts they are equal, that no id was handed out twice, that no record is
left queued, and that every refusal during the fault was the answer a client can act on (503 +
Retry-After, 507), never a 500 or a dropped connection."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.outages import RestartableMoto, RestartableRedis, Submitter, wait_all_completed
from tests.support.stack import SkiffProcess, endpoint_hcl

ECHO = {"echo": endpoint_hcl("echo", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1})}


def _check(submitter: Submitter, health: dict[str, Any], allowed: set[int], what: str) -> None:
    accepted = len(submitter.accepted)
    print(f"{what}: sent {submitter.sent}, accepted {accepted}, refused {submitter.statuses()}, health {health}")
    assert submitter.duplicates == []
    assert health["jobs"]["completed"] == accepted, health
    assert health["jobs"]["inQueue"] == 0 and health["jobs"]["inProgress"] == 0 and health["jobs"]["failed"] == 0
    for refusal in submitter.refusals:
        assert refusal.status in allowed, refusal
        assert int(refusal.headers["retry-after"]) > 0, refusal
        assert refusal.headers["content-type"] == "application/json" and '"error"' in refusal.body, refusal
        assert "Traceback" not in refusal.body
    assert any(r.status in allowed for r in submitter.refusals), f"{what}: the fault was never seen"


def _no_tracebacks(stack: SkiffProcess) -> None:
    log = stack.output()
    at = max(log.find("Traceback"), log.find("unexpected error"))
    assert at < 0, log[max(0, at - 500) : at + 6000]


def _until_accepted(submitter: Submitter, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(submitter.accepted) < count and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def echo_up(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], SkiffProcess]]:
    """Factory: `skiff up` with one echo endpoint and its worker ready; stopped at the end."""
    started: list[SkiffProcess] = []

    def start(env: dict[str, str]) -> SkiffProcess:
        endpoints = tmp_path / "endpoints"
        endpoints.mkdir()
        (endpoints / "echo.hcl").write_text(ECHO["echo"])
        stack = SkiffProcess(endpoints, tmp_path / "state", env)
        started.append(stack)
        # Generous: these run beside the rest of the suite, and the fault comes after the start.
        stack.start(timeout=120)
        stack.wait_ready_workers("echo", timeout=120)
        return stack

    yield start
    for stack in started:
        stack.stop()


@pytest.fixture
def restartable_redis(tmp_path: Path) -> Iterator[RestartableRedis]:
    server = RestartableRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def restartable_moto() -> Iterator[RestartableMoto]:
    server = RestartableMoto()
    server.start()
    yield server
    server.stop()


def test_redis_restart_with_append_only_loses_nothing_and_answers_503_meanwhile(
    echo_up: Callable[[dict[str, str]], SkiffProcess], restartable_redis: RestartableRedis
) -> None:
    stack = echo_up({"SKIFF_STORE": "redis", "SKIFF_REDIS_URL": restartable_redis.url()})
    with Submitter(stack) as submitter:
        time.sleep(2)
        restartable_redis.stop()
        time.sleep(3)
        restartable_redis.start()
        time.sleep(3)
    health = wait_all_completed(stack, submitter.accepted)
    _check(submitter, health, {503}, "redis restart")
    _no_tracebacks(stack)


def test_sqs_server_restart_recreates_the_queues_without_a_gateway_restart(
    echo_up: Callable[[dict[str, str]], SkiffProcess], restartable_moto: RestartableMoto
) -> None:
    stack = echo_up({**restartable_moto.env, "SKIFF_QUEUE": "sqs"})
    # moto keeps queues in memory: messages queued at its restart would go with it, as they would
    # with any SQS double. So the fault comes between jobs: all done before, refused during.
    with Submitter(stack) as before:
        time.sleep(2)
    wait_all_completed(stack, before.accepted)
    restartable_moto.stop()
    with Submitter(stack) as during:
        time.sleep(3)
    assert during.accepted == {}, "a /run was accepted while the queue service was down"
    restartable_moto.start()
    with Submitter(stack) as after:
        _until_accepted(after, 20)
    assert after.refusals == [], after.refusals[:3]
    accepted = {**before.accepted, **after.accepted}
    health = wait_all_completed(stack, accepted)
    print(f"sqs restart: before {len(before.accepted)}, after {len(after.accepted)}, during {during.statuses()}")
    during.accepted = accepted  # the totals, for the common checks
    _check(during, health, {503}, "sqs restart")
    _no_tracebacks(stack)


def test_a_full_state_disk_answers_507_and_loses_nothing(tmp_path: Path) -> None:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    # We run as root; a mount this test cannot make is a failure, named, not a skip.
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True)
    assert done.returncode == 0, f"mount -t tmpfs failed (the full-disk test needs root): {done.stderr!r}"
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(ECHO["echo"])
    stack = SkiffProcess(endpoints, mount / "state")
    stack.log_path = tmp_path / "skiff-up.log"  # off the small disk: the log must outlive the fault
    filler = mount / "filler"
    try:
        stack.start(timeout=120)
        stack.wait_ready_workers("echo", timeout=120)
        with Submitter(stack) as submitter:
            time.sleep(2)
            _fill(filler)
            time.sleep(3)
            filler.unlink()
            time.sleep(3)
        health = wait_all_completed(stack, submitter.accepted)
        _check(submitter, health, {507}, "full disk")
        _no_tracebacks(stack)
    finally:
        try:
            stack.stop()
        finally:
            subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Writes zeros to `path` until the filesystem has no byte left."""
    block = b"\0" * (1024 * 1024)
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError:
            pass
        for size in (64 * 1024, 4096, 512, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass


def test_a_stack_started_before_its_redis_waits_for_it_without_a_traceback(tmp_path: Path) -> None:
    """In a cluster the gateway may come up before Redis does: it waits, one line per try, and
    serves once Redis is there."""
    redis = RestartableRedis(tmp_path / "late-redis")
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(ECHO["echo"])
    stack = SkiffProcess(endpoints, tmp_path / "state", {"SKIFF_STORE": "redis", "SKIFF_REDIS_URL": redis.url()})
    starting = threading.Thread(target=stack.start, kwargs={"timeout": 120})
    starting.start()
    try:
        deadline = time.monotonic() + 90
        while "the job store is unreachable" not in stack.output() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "the job store is unreachable" in stack.output(), stack.output()
        redis.start()
        starting.join()
        stack.wait_ready_workers("echo", timeout=120)
        with stack.client(timeout=60) as client:
            job = client.post("/v2/echo/runsync", json={"input": {"n": 1}})
        assert job.status_code == 200 and job.json()["status"] == "COMPLETED", job.text
        _no_tracebacks(stack)
    finally:
        starting.join()
        stack.stop()
        redis.stop()
