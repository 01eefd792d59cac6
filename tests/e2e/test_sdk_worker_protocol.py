"""The Skiff worker speaks the official runpod SDK's worker protocol, request for request.

A small recording gateway (stdlib HTTP on 127.0.0.1) hands out jobs the way the real job-take,
job-done, job-stream, job-stop and ping routes do. For each scenario the same handler runs once
under the official `runpod` 1.12 worker and once under `skiff.serverless`, each in its own
subprocess, and the requests they make are compared: paths, query parameters, headers that carry
meaning (Authorization, Content-Type) and JSON bodies.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
API_KEY = "worker-key-123"
WORKER_ID = "worker-abc"
HOLD_S = 0.3  # how long the fake gateway holds an empty long-poll open

WORKER_SCRIPT = r"""
import asyncio, os, sys, time

if os.environ["TEST_SDK"] == "runpod":
    import runpod as sdk
else:
    import skiff as sdk

scenario = os.environ["TEST_SCENARIO"]


def plain(job):
    return {"echo": job["input"], "unicode": "h\u00e9"}


def boom(job):
    raise ValueError("boom")


def gen(job):
    for i in range(3):
        yield {"i": i}


async def agen(job):
    for i in range(2):
        await asyncio.sleep(0)
        yield f"part-{i}"


async def slow(job):
    if job["input"].get("slow"):
        await asyncio.sleep(60)
    return {"done": job["id"]}


def returns_error(job):
    return {"error": "bad input", "partial": 1}


def with_progress(job):
    sdk.serverless.progress_update(job, {"pct": 50})
    time.sleep(0.5)
    return "finished"


def sleepy(job):
    time.sleep(2)
    return {"slept": True}


running = set()


async def parallel(job):
    # Each job waits (up to 10 s) to see the other one running: proof that they overlap.
    running.add(job["id"])
    for _ in range(200):
        if len(running) == 2:
            break
        await asyncio.sleep(0.05)
    together = len(running) == 2
    await asyncio.sleep(0.2)
    return {"id": job["id"], "together": together}


config = {
    "plain": {"handler": plain},
    "raises": {"handler": boom},
    "generator": {"handler": gen, "return_aggregate_stream": True},
    "async_generator": {"handler": agen},
    "refresh": {"handler": plain, "refresh_worker": True},
    "stop": {"handler": slow},
    "dict_error": {"handler": returns_error},
    "progress": {"handler": with_progress},
    "sigterm": {"handler": sleepy},
    "concurrency": {"handler": parallel, "concurrency_modifier": lambda current: 2},
}[scenario]
sdk.serverless.start(config)
"""


# --------------------------------------------------------------------------- recording gateway


@dataclass
class Recorded:
    kind: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    at: float


@dataclass
class FakeGateway:
    jobs: list[dict[str, Any]]
    stop_after_s: dict[str, float] = field(default_factory=dict)  # job id -> stop this long after take
    take_status: int | None = None  # answer every job-take with this status instead
    requests: list[Recorded] = field(default_factory=list)
    taken_at: dict[str, float] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.cond = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------ server

    def start(self, port: int = 0) -> str:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                gateway.handle(self)

            def do_POST(self) -> None:
                gateway.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/v2/ep"

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def handle(self, req: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(req.path)
        segments = parts.path.split("/")  # ["", "v2", "ep", kind, ...]
        kind = segments[3] if len(segments) > 3 else "?"
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError:
                body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in req.headers.items()}
        record = Recorded(kind, req.command, parts.path, parse_qs(parts.query), headers, body, time.monotonic())
        with self.cond:
            self.requests.append(record)
            self.cond.notify_all()
        status, payload = self.answer(kind, record)
        data = b"" if payload is None else json.dumps(payload).encode()
        try:
            req.send_response(status)
            if payload is not None:
                req.send_header("Content-Type", "application/json")
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker dropped an open long-poll while shutting down

    def answer(self, kind: str, record: Recorded) -> tuple[int, Any]:
        if kind in ("job-take", "job-take-batch"):
            if self.take_status is not None:
                return self.take_status, {"error": "invalid worker key"}
            size = int(record.query.get("batch_size", ["1"])[0])
            deadline = time.monotonic() + HOLD_S
            with self.cond:
                while not self.jobs and time.monotonic() < deadline:
                    self.cond.wait(deadline - time.monotonic())
                batch, self.jobs = self.jobs[:size], self.jobs[size:]
                for job in batch:
                    self.taken_at[job["id"]] = time.monotonic()
            if not batch:
                return 204, None
            return 200, batch if kind == "job-take-batch" else batch[0]
        if kind == "job-stop":
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:
                with self.cond:
                    due = [
                        job_id
                        for job_id, after in self.stop_after_s.items()
                        if job_id in self.taken_at
                        and job_id not in self.stopped
                        and time.monotonic() - self.taken_at[job_id] >= after
                    ]
                    if due:
                        self.stopped.update(due)
                        return 200, {"jobsToStop": due}
                time.sleep(0.05)
            return 204, None
        return 200, {}

    # ------------------------------------------------------------ queries

    def of(self, *kinds: str) -> list[Recorded]:
        with self.cond:
            return [r for r in self.requests if r.kind in kinds]

    def wait_for(self, predicate: Callable[[FakeGateway], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"gateway never saw the expected requests; got {self.summary()}")
                self.cond.wait(min(left, 0.2))

    def summary(self) -> list[tuple[str, Any]]:
        return [(r.kind, r.body) for r in self.requests]

    def done_ids(self) -> list[str]:
        return [r.path.rsplit("/", 1)[-1] for r in self.requests if r.kind == "job-done"]


def worker_env(base: str, sdk: str, scenario: str, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "SKIFF_"))}
    env.update(
        {
            "TEST_SDK": sdk,
            "TEST_SCENARIO": scenario,
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(home),  # runpod reads ~/.runpod/config.toml for a key; keep it out
            "RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=test",
            "RUNPOD_WEBHOOK_PING": f"{base}/ping/$RUNPOD_POD_ID?gpu=test",
            "RUNPOD_AI_API_KEY": API_KEY,
            "RUNPOD_POD_ID": WORKER_ID,
            "RUNPOD_PING_INTERVAL": "1000",
            "RUNPOD_LOG_LEVEL": "INFO",
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
        }
    )
    return env


@dataclass
class Run:
    gateway: FakeGateway
    returncode: int | None
    output: str
    exited_by_itself: bool


def run_worker(
    script: Path,
    sdk: str,
    scenario: str,
    gateway: FakeGateway,
    until: Callable[[FakeGateway], bool],
    then_signal: bool = True,
    during: Callable[[subprocess.Popen[str], FakeGateway], None] | None = None,
    port: int = 0,
    start_gateway_after_s: float | None = None,
) -> Run:
    home = script.parent / f"home-{sdk}-{scenario}"
    home.mkdir(exist_ok=True)
    base = gateway.start(port) if start_gateway_after_s is None else f"http://127.0.0.1:{port}/v2/ep"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=worker_env(base, sdk, scenario, home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        if start_gateway_after_s is not None:
            time.sleep(start_gateway_after_s)
            gateway.start(port)
        if during is not None:
            during(proc, gateway)
        gateway.wait_for(until)
        exited_by_itself = False
        if then_signal:
            time.sleep(0.3)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        else:
            proc.wait(timeout=30)
            exited_by_itself = True
        output, _ = proc.communicate(timeout=30)
        return Run(gateway, proc.returncode, output, exited_by_itself)
    finally:
        if proc.poll() is None:
            proc.kill()
        # runpod's heartbeat is a child process; make sure nothing of this run outlives it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        gateway.close()


def run_both(script: Path, scenario: str, make: Callable[[], FakeGateway], **kwargs: Any) -> dict[str, Run]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {sdk: pool.submit(run_worker, script, sdk, scenario, make(), **kwargs) for sdk in ("runpod", "skiff")}
        return {sdk: future.result() for sdk, future in futures.items()}


# --------------------------------------------------------------------------- normalising


def _norm_body(body: Any) -> Any:
    """Make bodies comparable: parse runpod's JSON error report and blank what differs by design."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    error = out.get("error")
    if isinstance(error, str) and error.startswith("{"):
        report = json.loads(error)
        assert "ValueError: boom" in report.pop("error_traceback")
        assert report.pop("runpod_version")
        out["error"] = report
    elif isinstance(error, str) and error.startswith("handler: "):
        out["error"] = error.split("\ntraceback:")[0]
    return out


def result_requests(run: Run) -> list[tuple[Any, ...]]:
    """job-done and job-stream requests in order, with everything the gateway would look at."""
    return [
        (
            r.method,
            r.path,
            sorted(r.query.items()),
            r.headers.get("content-type"),
            r.headers.get("authorization"),
            r.headers.get("x-request-id"),
            json.dumps(_norm_body(r.body), sort_keys=True),
        )
        for r in run.gateway.of("job-done", "job-stream")
    ]


def _q(query: dict[str, list[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((key, tuple(values)) for key, values in query.items()))


def take_shapes(run: Run) -> set[tuple[Any, ...]]:
    return {
        (r.method, r.path, _q(r.query), r.headers.get("authorization"))
        for r in run.gateway.of("job-take", "job-take-batch")
    }


def first_take(run: Run) -> tuple[Any, ...]:
    r = run.gateway.of("job-take", "job-take-batch")[0]
    return (r.method, r.path, sorted(r.query.items()), r.headers.get("authorization"), r.headers.get("content-type"))


def stop_shapes(run: Run) -> set[tuple[Any, ...]]:
    return {(r.method, r.path, _q(r.query), r.headers.get("authorization")) for r in run.gateway.of("job-stop")}


def ping_shapes(run: Run) -> set[tuple[str | None, str]]:
    """(job_id, query keys) per ping; every ping must be a GET to the worker's ping path with the key."""
    shapes = set()
    for r in run.gateway.of("ping"):
        assert (r.method, r.path, r.headers.get("authorization")) == ("GET", f"/v2/ep/ping/{WORKER_ID}", API_KEY)
        shapes.add((r.query.get("job_id", [None])[0], ",".join(sorted(r.query))))
    return shapes


def assert_same_protocol(runs: dict[str, Run], *, same_takes: bool = True) -> None:
    runpod, skiff = runs["runpod"], runs["skiff"]
    assert result_requests(skiff) == result_requests(runpod), (runpod.output, skiff.output)
    assert first_take(skiff) == first_take(runpod)
    if same_takes:
        assert take_shapes(skiff) == take_shapes(runpod)
    assert stop_shapes(skiff) == stop_shapes(runpod)
    assert stop_shapes(skiff), "the worker never polled job-stop"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "worker.py"
    path.write_text(WORKER_SCRIPT)
    return path


def jobs(*ids: str, **inputs: Any) -> Callable[[], FakeGateway]:
    return lambda: FakeGateway(jobs=[{"id": i, "input": inputs.get(i, {"n": n})} for n, i in enumerate(ids)])


def done(*ids: str) -> Callable[[FakeGateway], bool]:
    return lambda g: all(i in g.done_ids() for i in ids)


# --------------------------------------------------------------------------- scenarios


def test_plain_job_same_requests_as_runpod(script: Path) -> None:
    runs = run_both(script, "plain", jobs("job-1"), until=done("job-1"))
    assert_same_protocol(runs)
    skiff = runs["skiff"].gateway
    [result] = skiff.of("job-done")
    assert result.path == f"/v2/ep/job-done/{WORKER_ID}/job-1"
    assert result.query == {"gpu": ["test"], "isStream": ["false"]}
    assert result.headers["content-type"] == "application/x-www-form-urlencoded"
    assert result.headers["authorization"] == API_KEY
    assert result.body == {"output": {"echo": {"n": 0}, "unicode": "hé"}}
    take = skiff.of("job-take")[0]
    assert take.path == f"/v2/ep/job-take/{WORKER_ID}"
    assert take.query == {"gpu": ["test"], "job_in_progress": ["0"]}
    # SIGTERM while idle: a graceful exit, code 0, like runpod.
    assert runs["skiff"].returncode == runs["runpod"].returncode == 0


def test_raising_handler_sends_runpods_error_report(script: Path) -> None:
    runs = run_both(script, "raises", jobs("job-1"), until=done("job-1"))
    assert_same_protocol(runs)
    [result] = runs["skiff"].gateway.of("job-done")
    report = json.loads(result.body["error"])
    assert report["error_type"] == "<class 'ValueError'>"
    assert report["error_message"] == "boom"
    assert report["worker_id"] == WORKER_ID
    assert "output" not in result.body


def test_handler_returning_error_dict(script: Path) -> None:
    runs = run_both(script, "dict_error", jobs("job-1"), until=done("job-1"))
    assert_same_protocol(runs)
    [result] = runs["skiff"].gateway.of("job-done")
    assert result.body == {"output": {"partial": 1}, "error": "bad input"}


def test_generator_streams_chunks_then_aggregate(script: Path) -> None:
    runs = run_both(script, "generator", jobs("job-1"), until=done("job-1"))
    assert_same_protocol(runs)
    sent = runs["skiff"].gateway.of("job-stream", "job-done")
    assert [(r.kind, r.query["isStream"], r.body) for r in sent] == [
        ("job-stream", ["false"], {"output": {"i": 0}}),
        ("job-stream", ["false"], {"output": {"i": 1}}),
        ("job-stream", ["false"], {"output": {"i": 2}}),
        ("job-done", ["true"], {"output": [{"i": 0}, {"i": 1}, {"i": 2}]}),
    ]


def test_async_generator_without_aggregate(script: Path) -> None:
    runs = run_both(script, "async_generator", jobs("job-1"), until=done("job-1"))
    assert_same_protocol(runs)
    [final] = runs["skiff"].gateway.of("job-done")
    assert final.body == {"output": []}  # runpod sends an empty list, not a missing output


def test_refresh_worker_sends_stop_pod_and_exits(script: Path) -> None:
    runs = run_both(script, "refresh", jobs("job-1", "job-2"), until=done("job-1"), then_signal=False)
    assert_same_protocol(runs)
    for run in runs.values():
        assert run.exited_by_itself and run.returncode == 0, run.output
        assert run.gateway.done_ids() == ["job-1"]
        assert "job-2" not in run.gateway.taken_at  # never took a second job
    [result] = runs["skiff"].gateway.of("job-done")
    assert result.body["stopPod"] is True


def test_stop_signal_cancels_running_job(script: Path) -> None:
    def make() -> FakeGateway:
        gateway = jobs("slow-1", "after-1", **{"slow-1": {"slow": True}, "after-1": {"slow": False}})()
        gateway.stop_after_s = {"slow-1": 1.5}
        return gateway

    def idle_ping_after_done(g: FakeGateway) -> bool:
        finished = [r.at for r in g.requests if r.kind == "job-done"]
        return bool(finished) and any(
            r.kind == "ping" and "job_id" not in r.query and r.at > finished[0] for r in g.requests
        )

    runs = run_both(script, "stop", make, until=idle_ping_after_done)
    assert_same_protocol(runs)
    for run in runs.values():
        assert run.gateway.stopped == {"slow-1"}
        assert run.gateway.done_ids() == ["after-1"]  # the stopped job reports nothing
    # Both ping the same way, idle or busy; while the slow job runs, its id rides on the ping.
    # (Whether a ping also lands during the short second job is timing, so it is left out.)
    for run in runs.values():
        assert ("slow-1", "gpu,job_id,runpod_version") in ping_shapes(run)
    assert ping_shapes(runs["skiff"]) - {("after-1", "gpu,job_id,runpod_version")} == ping_shapes(runs["runpod"]) - {
        ("after-1", "gpu,job_id,runpod_version")
    }


def test_progress_update_posts_in_progress_to_job_done(script: Path) -> None:
    runs = run_both(script, "progress", jobs("job-1"), until=lambda g: len(g.of("job-done")) >= 2)
    assert_same_protocol(runs)
    bodies = [r.body for r in runs["skiff"].gateway.of("job-done")]
    assert bodies == [{"status": "IN_PROGRESS", "output": {"pct": 50}}, {"output": "finished"}]


def test_sigterm_lets_the_running_job_finish(script: Path) -> None:
    def signal_when_taken(proc: subprocess.Popen[str], gateway: FakeGateway) -> None:
        gateway.wait_for(lambda g: "job-1" in g.taken_at)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)

    runs = run_both(
        script, "sigterm", jobs("job-1", "job-2"), until=done("job-1"), then_signal=False, during=signal_when_taken
    )
    assert_same_protocol(runs)
    for run in runs.values():
        assert run.returncode == 0, run.output
        assert run.gateway.done_ids() == ["job-1"]
        assert "job-2" not in run.gateway.taken_at
    assert runs["skiff"].gateway.of("job-done")[0].body == {"output": {"slept": True}}


def test_concurrency_modifier_uses_batch_take(script: Path) -> None:
    runs = run_both(script, "concurrency", jobs("job-1", "job-2"), until=done("job-1", "job-2"))
    runpod, skiff = runs["runpod"], runs["skiff"]
    assert first_take(skiff) == first_take(runpod)
    take = skiff.gateway.of("job-take-batch")[0]
    assert take.path == f"/v2/ep/job-take-batch/{WORKER_ID}"
    assert take.query == {"gpu": ["test"], "batch_size": ["2"], "job_in_progress": ["0"]}
    for run in runs.values():
        results = sorted(json.dumps(r.body, sort_keys=True) for r in run.gateway.of("job-done"))
        assert results == [
            '{"output": {"id": "job-1", "together": true}}',
            '{"output": {"id": "job-2", "together": true}}',
        ]


# --------------------------------------------------------------------------- Skiff's own robustness


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_worker_survives_an_unreachable_gateway(script: Path) -> None:
    run = run_worker(
        script,
        "skiff",
        "plain",
        jobs("job-1")(),
        until=done("job-1"),
        port=_free_port(),
        start_gateway_after_s=2.0,
    )
    assert run.gateway.done_ids() == ["job-1"]
    assert "job-take failed (ConnectError" in run.output
    assert "Traceback" not in run.output
    assert run.returncode == 0


def test_rejected_key_is_logged_clearly(script: Path) -> None:
    def make() -> FakeGateway:
        return FakeGateway(jobs=[], take_status=401)

    run = run_worker(script, "skiff", "plain", make(), until=lambda g: len(g.of("job-take")) >= 2)
    assert "rejected this worker's key (HTTP 401)" in run.output
    assert "RUNPOD_AI_API_KEY" in run.output
    assert "Traceback" not in run.output
    assert run.returncode == 0  # still alive and retrying until told to stop
