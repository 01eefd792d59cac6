"""Throughput and latency of one Skiff gateway with no-op workers; prints one table.

    .venv/bin/python benchmarks/gateway.py                     # both modes, a few minutes
    .venv/bin/python benchmarks/gateway.py --modes embedded    # SQLite only
    .venv/bin/python benchmarks/gateway.py --quick             # tiny run (the test uses it)

Everything runs here, in this one run, on free 127.0.0.1 ports with throw-away state dirs; the
workers are benchmarks/workers/noop_skiff.py (Skiff SDK, returns its input). Modes:
- embedded: one `skiff up` process per worker count, queue and job store on one SQLite file;
- cluster: as a cluster runs it, a `skiff gateway` process and a `skiff controller` process (whose
  local workers call the gateway), the job store on a private redis-server and the SQS queue on an
  SQS-compatible server, both started here as processes (tests/support/services.py), with fresh
  queue and key prefixes per run. Two SQS servers: moto (Python, ~5 ms a call, the one the
  contract tests use) and fauxqs (Node.js, https://github.com/kibertoad/fauxqs, installed by
  scripts/install-fauxqs.sh), fast enough that Skiff's own cost shows. Each is measured with
  Skiff's SQS batching off (one request per message: the baseline, "before") and on (the
  default), in the same run.

Measured per mode, with 1 and with 8 workers (min_workers = max_workers = N):
- /run jobs/s: N jobs submitted by many concurrent clients, clock stopped once /health shows no
  job queued or in progress (then every job is checked COMPLETED, off the clock);
- /runsync jobs/s: many concurrent clients, each calling /runsync in a loop;
and with 1 worker, /runsync latency at low load (one client, sequential, after a warm-up).
Baselines, measured once: the same handler called in-process, and the official runpod SDK's own
local API server (`noop_runpod.py --rp_serve_api`) answering /runsync sequentially.

The clients share the machine's cores with the gateway and the workers; CPU seconds per job of
each process are printed under the table so the cost of each part is visible. SQS requests are
counted inside the Skiff processes by benchmarks/sqs_count/sitecustomize.py (it wraps the
request method of Skiff's SQS client; Skiff's code is unchanged), and priced at
SQS_PRICE_PER_MILLION per million requests.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx

if __package__ in (None, ""):  # run as a file: make `benchmarks`, `skiff` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The benchmark reuses the test harness on purpose: the processes it measures are started exactly
# as the end-to-end tests start them (same flags, same environment, same teardown).
from tests.support.services import AWS_TEST_ENV, MotoServer, fauxqs_server, moto_server, redis_server
from tests.support.stack import (
    SKIFF,
    TEST_KEY,
    GatewayReplica,
    LoggedProcess,
    SkiffProcess,
    children,
    endpoint_hcl,
    free_port,
)

REPO = Path(__file__).resolve().parent.parent
ENDPOINT = "noop"
SKIFF_WORKER = "benchmarks/workers/noop_skiff.py"
RUNPOD_WORKER = REPO / "benchmarks" / "workers" / "noop_runpod.py"
PAYLOAD = {"input": {"n": 1}}
TARGET_OVERHEAD_MS = 5.0
TARGET_JOBS_S = 1000.0
WORKER_COUNTS = (1, 8)
MODES = ("embedded", "cluster")
SQS_SERVERS = ("moto", "fauxqs")
TARGET_SQS_REQUESTS_PER_JOB = 1.0
TARGET_GATEWAY_CPU_MS = 1.5
# Standard queues, per million requests after the free tier (first 1M requests a month), us-east-1;
# https://aws.amazon.com/sqs/pricing/ (a batch of up to 10 messages is one request).
SQS_PRICE_PER_MILLION = 0.40
SQS_COUNTER = Path(__file__).resolve().parent / "sqs_count"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# tests/support/stack.py shortens leases and pings for crash tests; a benchmark runs with the defaults
# of skiff_core.config so that background traffic is what production would see.
PRODUCTION_ENV = {
    "SKIFF_LEASE_S": "30",
    "SKIFF_PING_INTERVAL_S": "10",
    "SKIFF_WORKER_LOST_AFTER_S": "30",
    "SKIFF_TAKE_WAIT_S": "20",
    # One client pushes far past Runpod's per-key limits here: the benchmark measures capacity.
    "SKIFF_RATE_LIMITS_ENABLED": "false",
}


class BenchmarkError(Exception):
    """A run that cannot give a number (a process did not start, a job did not complete)."""


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        if len(seconds) < 2:
            raise BenchmarkError("need at least two latency samples")
        cuts = statistics.quantiles([s * 1000.0 for s in seconds], n=100, method="inclusive")
        return cls(cuts[49], cuts[94], cuts[98])

    def cell(self) -> str:
        return f"{_ms(self.p50_ms)} / {_ms(self.p95_ms)} / {_ms(self.p99_ms)}"


def _ms(value: float) -> str:
    if value < 0.01:
        return f"{value * 1000:.2f}us"
    return f"{value:.2f}"


@dataclass(frozen=True)
class Throughput:
    jobs: int
    seconds: float
    # CPU seconds used during the measurement, by the gateway process (`skiff up` in embedded
    # mode: gateway and controller in one), all workers, the services, this client.
    gateway_cpu_s: float
    workers_cpu_s: float
    sqs_cpu_s: float
    redis_cpu_s: float
    client_cpu_s: float
    sqs_requests: dict[str, int] = field(default_factory=dict)  # per SQS action, during the run
    controller_cpu_s: float | None = None  # cluster mode: the `skiff controller` process

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds

    @property
    def gateway_cpu_ms(self) -> float:
        return self.gateway_cpu_s * 1000.0 / self.jobs

    @property
    def requests_per_job(self) -> float:
        return sum(self.sqs_requests.values()) / self.jobs

    def cpu_ms_per_job(self, sqs_server: str) -> str:
        per = 1000.0 / self.jobs
        services = ""
        if sqs_server:
            services = f", {sqs_server} {self.sqs_cpu_s * per:.2f}, redis {self.redis_cpu_s * per:.2f}"
        if self.controller_cpu_s is None:
            skiff = f"skiff up (gateway+controller) {self.gateway_cpu_s * per:.2f}"
        else:
            skiff = f"gateway {self.gateway_cpu_s * per:.2f}, controller {self.controller_cpu_s * per:.2f}"
        return f"{skiff}, workers {self.workers_cpu_s * per:.2f}{services}, client {self.client_cpu_s * per:.2f}"

    def requests_detail(self) -> str:
        actions = ", ".join(f"{name} {n / self.jobs:.2f}" for name, n in sorted(self.sqs_requests.items()))
        return f"SQS requests/job {self.requests_per_job:.2f} ({actions})"


@dataclass(frozen=True)
class Variant:
    mode: str
    sqs_server: str = ""  # cluster mode: moto or fauxqs
    batching: bool = True

    @property
    def label(self) -> str:
        if self.mode != "cluster":
            return "embedded (SQLite)"
        return f"cluster ({self.sqs_server} SQS + Redis), {'batched' if self.batching else 'unbatched (before)'}"

    @property
    def tag(self) -> str:
        return f"{self.mode[0]}{self.sqs_server[:1]}{'b' if self.batching else 'u'}"


@dataclass
class ModeResult:
    variant: Variant
    run: dict[int, Throughput] = field(default_factory=dict)
    runsync: dict[int, Throughput] = field(default_factory=dict)
    latency: Latency | None = None


# --------------------------------------------------------------------------- process CPU


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process from /proc (proc(5), fields 14 and 15); 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _sqs_counts(folder: Path | None) -> dict[str, int]:
    """SQS requests per action so far, summed over every process counting into `folder`."""
    total: dict[str, int] = {}
    for path in folder.glob("*.json") if folder is not None else ():
        try:
            counts = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for action, n in counts.items():
            total[action] = total.get(action, 0) + int(n)
    return total


class CpuMeter:
    """CPU seconds spent by the gateway, its workers, the SQS server, redis-server and this script,
    and SQS requests made (benchmarks/sqs_count), over one measurement."""

    def __init__(
        self,
        gateway_pid: int,
        worker_pids: Sequence[int],
        services: Services | None,
        counts: Path | None,
        controller_pid: int = 0,
    ) -> None:
        self.gateway_pid, self.worker_pids, self.controller_pid = gateway_pid, list(worker_pids), controller_pid
        self.sqs_pid = services.sqs.pid if services else 0
        self.redis_pid = services.redis_pid if services else 0
        self.counts = counts

    def _sample(self) -> tuple[float, float, float, float, float, float]:
        return (
            _cpu_seconds(self.gateway_pid),
            sum(_cpu_seconds(p) for p in self.worker_pids),
            _cpu_seconds(self.sqs_pid) if self.sqs_pid else 0.0,
            _cpu_seconds(self.redis_pid) if self.redis_pid else 0.0,
            time.process_time(),
            _cpu_seconds(self.controller_pid) if self.controller_pid else 0.0,
        )

    def measure(self) -> Callable[[int, float], Throughput]:
        before, requests_before = self._sample(), _sqs_counts(self.counts)

        def done(jobs: int, seconds: float) -> Throughput:
            if self.counts is not None:
                time.sleep(0.15)  # the counters are written every 50 ms
            after, requests_after = self._sample(), _sqs_counts(self.counts)
            gw, wk, sq, rd, cl, ct = (a - b for a, b in zip(after, before, strict=True))
            requests = {k: n - requests_before.get(k, 0) for k, n in requests_after.items()}
            counted = {k: n for k, n in requests.items() if n}
            return Throughput(jobs, seconds, gw, wk, sq, rd, cl, counted, ct if self.controller_pid else None)

        return done


# --------------------------------------------------------------------------- load generators


def _session(url: str, key: str, connections: int) -> aiohttp.ClientSession:
    # aiohttp, not httpx, drives the load: httpx's async pool costs ~10 ms of CPU per request here
    # with 64 requests in flight (httpcore re-scans its pool and retries `import sniffio` per
    # request), which would measure the client instead of the gateway. aiohttp costs ~0.25 ms.
    return aiohttp.ClientSession(
        url,
        headers={"Authorization": f"Bearer {key}"},
        connector=aiohttp.TCPConnector(limit=connections),
        timeout=aiohttp.ClientTimeout(total=120),
    )


async def _post(session: aiohttp.ClientSession, path: str) -> tuple[int, Any]:
    async with session.post(path, json=PAYLOAD) as response:
        text = await response.text()
        return response.status, (json.loads(text) if response.status == 200 else text)


async def _get(session: aiohttp.ClientSession, path: str) -> Any:
    async with session.get(path) as response:
        if response.status != 200:
            raise BenchmarkError(f"GET {path} answered {response.status}: {(await response.text())[:200]}")
        return await response.json()


async def _wait_drained(session: aiohttp.ClientSession, deadline: float) -> None:
    while True:
        jobs = (await _get(session, f"/v2/{ENDPOINT}/health"))["jobs"]
        if jobs["inQueue"] == 0 and jobs["inProgress"] == 0:
            return
        if time.monotonic() > deadline:
            raise BenchmarkError(f"jobs still pending after the time limit: {jobs}")
        await asyncio.sleep(0.01)


async def _check_completed(session: aiohttp.ClientSession, ids: Sequence[str], concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def status(job_id: str) -> str:
        async with gate:
            return str((await _get(session, f"/v2/{ENDPOINT}/status/{job_id}")).get("status"))

    statuses = await asyncio.gather(*(status(i) for i in ids))
    bad = [(i, s) for i, s in zip(ids, statuses, strict=True) if s != "COMPLETED"]
    if bad:
        raise BenchmarkError(f"{len(bad)} of {len(ids)} /run jobs did not complete, e.g. {bad[:3]}")


async def run_throughput(url: str, key: str, jobs: int, clients: int, meter: CpuMeter) -> Throughput:
    """Submit `jobs` via /run with `clients` requests in flight; time until all are COMPLETED."""
    async with _session(url, key, clients) as session:
        gate = asyncio.Semaphore(clients)

        async def submit() -> str:
            async with gate:
                status, body = await _post(session, f"/v2/{ENDPOINT}/run")
            if status != 200:
                raise BenchmarkError(f"/run answered {status}: {str(body)[:200]}")
            return str(body["id"])

        finish = meter.measure()
        started = time.perf_counter()
        ids = await asyncio.gather(*(submit() for _ in range(jobs)))
        await _wait_drained(session, time.monotonic() + 300)
        result = finish(jobs, time.perf_counter() - started)
        await _check_completed(session, ids, clients)
        return result


async def runsync_throughput(url: str, key: str, jobs: int, clients: int, meter: CpuMeter) -> Throughput:
    """`clients` concurrent loops of /runsync until `jobs` calls have answered COMPLETED."""
    remaining = jobs

    async with _session(url, key, clients) as session:

        async def loop() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                status, body = await _post(session, f"/v2/{ENDPOINT}/runsync")
                if status != 200 or body.get("status") != "COMPLETED":
                    raise BenchmarkError(f"/runsync answered {status}: {str(body)[:200]}")

        finish = meter.measure()
        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        return finish(jobs, time.perf_counter() - started)


def sequential_latency(url: str, headers: dict[str, str], warmup: int, samples: int) -> list[float]:
    """One client, one connection, one /runsync at a time: seconds per round trip."""
    times: list[float] = []
    with httpx.Client(base_url=url, headers=headers, timeout=30.0) as client:
        for i in range(warmup + samples):
            started = time.perf_counter()
            response = client.post("/runsync", json=PAYLOAD)
            elapsed = time.perf_counter() - started
            body = response.json() if response.status_code == 200 else {}
            if body.get("status") != "COMPLETED" or body.get("output") != PAYLOAD["input"]:
                raise BenchmarkError(f"{url}/runsync answered {response.status_code}: {response.text[:200]}")
            if i >= warmup:
                times.append(elapsed)
    return times


def in_process_latency(samples: int) -> list[float]:
    """The no-op handler of the workers, called directly: the floor every other number sits on."""

    def handler(job: dict[str, Any]) -> Any:
        return job["input"]

    job = {"id": "bench", **PAYLOAD}
    times: list[float] = []
    for _ in range(samples):
        started = time.perf_counter_ns()
        handler(job)
        times.append((time.perf_counter_ns() - started) / 1e9)
    return times


# --------------------------------------------------------------------------- processes


@dataclass
class Services:
    env: dict[str, str]
    sqs: MotoServer
    redis_pid: int
    sqs_call: Latency  # one SendMessage to the SQS server, as boto3 sees it


@contextmanager
def cluster_env(tmp: Path, sqs_server: str, samples: int) -> Iterator[Services]:
    """The SQS server and redis-server as processes; the environment that points Skiff at them."""
    start = moto_server if sqs_server == "moto" else fauxqs_server
    with start() as sqs, redis_server(tmp / f"redis-{sqs_server}") as redis:
        env = {**sqs.env, "SKIFF_QUEUE": "sqs", "SKIFF_STORE": "redis", "SKIFF_REDIS_URL": redis.url(0)}
        yield Services(env, sqs, redis.pid, Latency.of(sqs_call_latency(sqs.url, samples)))


def sqs_call_latency(url: str, samples: int) -> list[float]:
    """Seconds per SendMessage: what every SQS call of a cluster column costs at least."""
    import boto3  # a cluster extra: only this mode needs it

    sqs = boto3.client("sqs", endpoint_url=url, region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"])
    queue = sqs.create_queue(QueueName="bench-probe")["QueueUrl"]
    times = []
    for _ in range(samples + 5):
        started = time.perf_counter()
        sqs.send_message(QueueUrl=queue, MessageBody="x")
        times.append(time.perf_counter() - started)
    sqs.delete_queue(QueueUrl=queue)
    return times[5:]


@dataclass(frozen=True)
class Running:
    """What a measurement needs of the Skiff processes it measures."""

    url: str
    key: str
    gateway_pid: int  # `skiff up` in embedded mode
    controller_pid: int  # 0 when the gateway process runs the controller too
    worker_pids: list[int]


def _endpoints_and_env(
    tmp: Path, env: dict[str, str], workers: int, concurrency: int, tag: str
) -> tuple[Path, dict[str, str]]:
    """One no-op endpoint of exactly `workers` workers; the environment of the Skiff processes."""
    endpoints = tmp / f"endpoints-{tag}"
    endpoints.mkdir()
    (endpoints / f"{ENDPOINT}.hcl").write_text(
        endpoint_hcl(
            ENDPOINT,
            SKIFF_WORKER,
            env={"NOOP_CONCURRENCY": str(concurrency)},
            scaling={"min_workers": workers, "max_workers": workers},
        )
    )
    # Fresh SQS queue names and Redis keys per run: nothing left over from the previous one.
    run_env = {**PRODUCTION_ENV, **env, "SKIFF_SQS_QUEUE_PREFIX": f"b{tag}-", "SKIFF_REDIS_PREFIX": f"b{tag}:"}
    if "SKIFF_BENCH_SQS_COUNTS" in env:
        # benchmarks/sqs_count/sitecustomize.py counts the SQS requests of each Skiff process.
        run_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SQS_COUNTER), os.environ.get("PYTHONPATH")]))
    return endpoints, run_env


@contextmanager
def skiff_up(tmp: Path, env: dict[str, str], workers: int, concurrency: int, tag: str) -> Iterator[Running]:
    """`skiff up` with one no-op endpoint of exactly `workers` workers, all ready when yielded."""
    endpoints, run_env = _endpoints_and_env(tmp, env, workers, concurrency, tag)
    proc = SkiffProcess(endpoints, tmp / f"state-{tag}", extra_env=run_env)
    try:
        proc.start(timeout=180)
        proc.wait_ready_workers(ENDPOINT, workers, timeout=120)
        assert proc.proc is not None
        yield Running(proc.url, proc.key, proc.proc.pid, 0, proc.worker_pids())
    except BaseException:
        # The gateway's own account of what went wrong, before its state dir is deleted.
        print(f"--- skiff up output ({tag}), last lines ---\n{proc.output()[-4000:]}", file=sys.stderr)
        raise
    finally:
        pids = proc.worker_pids() if proc.proc is not None and proc.proc.poll() is None else []
        try:
            proc.stop()
        finally:
            _kill_leftovers(pids)


@contextmanager
def gateway_and_controller(
    tmp: Path, env: dict[str, str], workers: int, concurrency: int, tag: str
) -> Iterator[Running]:
    """`skiff gateway` and `skiff controller` as two processes, as a cluster runs them; the
    controller's local workers call the gateway. All `workers` ready when yielded."""
    endpoints, run_env = _endpoints_and_env(tmp, env, workers, concurrency, tag)
    gateway = GatewayReplica(endpoints, tmp / f"gateway-{tag}", run_env)
    state = tmp / f"controller-{tag}"
    state.mkdir()
    controller = LoggedProcess(
        [SKIFF, "controller", "--endpoints", str(endpoints), "--state-dir", str(state)],
        {**gateway.env, "SKIFF_PUBLIC_URL": gateway.url},
        state / "controller.log",
        "leading after",
    )
    try:
        gateway.start(timeout=180)
        controller.start(timeout=180)
        with gateway.client() as client:
            deadline = time.monotonic() + 180
            while client.get(f"/v2/{ENDPOINT}/health").json()["workers"]["ready"] < workers:
                if time.monotonic() > deadline:
                    raise BenchmarkError(f"{workers} workers were not ready in time")
                time.sleep(0.1)
        assert gateway.proc is not None
        yield Running(gateway.url, TEST_KEY, gateway.proc.pid, controller.pid, sorted(children(controller.pid)))
    except BaseException:
        print(
            f"--- gateway ({tag}) ---\n{gateway.output()[-3000:]}\n--- controller ---\n{controller.output()[-3000:]}",
            file=sys.stderr,
        )
        raise
    finally:
        pids = (
            sorted(children(controller.pid)) if controller.proc is not None and controller.proc.poll() is None else []
        )
        try:
            controller.stop()
            if gateway.proc is not None:
                gateway.stop()
        finally:
            _kill_leftovers(pids)


def _kill_leftovers(pids: Sequence[int]) -> None:
    # Workers die with `skiff up` (PR_SET_PDEATHSIG); this covers a `skiff up` that had to be killed.
    for pid in pids:
        try:
            if SKIFF_WORKER.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


@contextmanager
def runpod_api_server() -> Iterator[str]:
    """The official runpod SDK's local test server (`--rp_serve_api`) for the no-op handler."""
    port = free_port()
    args = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, str(RUNPOD_WORKER), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Its own group: a terminal's Ctrl-C reaches only this script, which then stops it.
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise BenchmarkError(f"the runpod API server exited with status {proc.returncode}")
            try:
                httpx.get(f"{url}/", timeout=1)  # any answer (404 included) means it is serving
                break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise BenchmarkError("the runpod API server did not answer within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Options:
    modes: tuple[str, ...]
    sqs_servers: tuple[str, ...]
    batching: tuple[bool, ...]
    jobs: int
    cluster_jobs: int
    clients: int
    concurrency: int
    samples: int
    warmup: int


def measure_mode(variant: Variant, services: Services | None, tmp: Path, opts: Options) -> ModeResult:
    result = ModeResult(variant)
    mode = variant.label
    jobs = opts.cluster_jobs if variant.mode == "cluster" else opts.jobs
    env: dict[str, str] = {}
    if services is not None:
        env = {**services.env, "SKIFF_SQS_BATCHING": "true" if variant.batching else "false"}
    for workers in WORKER_COUNTS:
        tag = f"{variant.tag}{workers}"
        counts: Path | None = None
        if services is not None:
            counts = tmp / f"sqs-counts-{tag}"
            counts.mkdir()
            env["SKIFF_BENCH_SQS_COUNTS"] = str(counts)
        apart = variant.mode == "cluster"
        what = "skiff gateway and skiff controller" if apart else "skiff up"
        print(f"[{mode}] {workers} worker(s): starting {what}", file=sys.stderr, flush=True)
        start = gateway_and_controller if apart else skiff_up
        with start(tmp, env, workers, opts.concurrency, tag) as proc:
            meter = CpuMeter(proc.gateway_pid, proc.worker_pids, services, counts, proc.controller_pid)
            headers = {"Authorization": f"Bearer {proc.key}"}
            base = f"{proc.url}/v2/{ENDPOINT}"
            if workers == 1:
                print(f"[{mode}] runsync latency", file=sys.stderr, flush=True)
                result.latency = Latency.of(sequential_latency(base, headers, opts.warmup, opts.samples))
            else:
                sequential_latency(base, headers, opts.warmup, 0)
            print(f"[{mode}] {workers} worker(s): /run x {jobs}", file=sys.stderr, flush=True)
            result.run[workers] = asyncio.run(run_throughput(proc.url, proc.key, jobs, opts.clients, meter))
            print(f"[{mode}] {workers} worker(s): /runsync x {jobs}", file=sys.stderr, flush=True)
            result.runsync[workers] = asyncio.run(runsync_throughput(proc.url, proc.key, jobs, opts.clients, meter))
    return result


@dataclass(frozen=True)
class Results:
    modes: list[ModeResult]
    in_process: Latency
    runpod: Latency
    sqs_calls: dict[str, Latency]  # per SQS server: one SendMessage p50/p95/p99


def run_all(opts: Options) -> Results:
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="skiff-bench-")))
        print(f"state dirs and endpoint files under {tmp}", file=sys.stderr, flush=True)
        print("baseline: in-process handler, runpod --rp_serve_api", file=sys.stderr, flush=True)
        in_process = Latency.of(in_process_latency(max(opts.samples, 1000)))
        with runpod_api_server() as rp_url:
            runpod = Latency.of(sequential_latency(rp_url, {}, opts.warmup, opts.samples))
        results = []
        sqs_calls: dict[str, Latency] = {}
        for mode in opts.modes:
            if mode != "cluster":
                results.append(measure_mode(Variant(mode), None, tmp, opts))
                continue
            for server in opts.sqs_servers:
                with cluster_env(tmp, server, min(opts.samples, 100)) as services:
                    sqs_calls[server] = services.sqs_call
                    for batching in opts.batching:
                        results.append(measure_mode(Variant(mode, server, batching), services, tmp, opts))
                        # The table so far, so a long run that fails later still leaves its numbers.
                        print(render(Results(results, in_process, runpod, sqs_calls), opts), file=sys.stderr)
        return Results(results, in_process, runpod, sqs_calls)


# --------------------------------------------------------------------------- the table


def _rate(route: str, workers: int, result: ModeResult) -> str:
    table = result.run if route == "/run" else result.runsync
    return f"{table[workers].jobs_per_s:,.0f}"


def render(outcome: Results, opts: Options) -> str:
    results, in_process, runpod = outcome.modes, outcome.in_process, outcome.runpod
    headers = ["", *(r.variant.label for r in results)]
    rows: list[list[str]] = []

    def row(label: str, cell: Callable[[ModeResult], str]) -> None:
        rows.append([label, *(cell(r) for r in results)])

    for route in ("/run", "/runsync"):
        for workers in WORKER_COUNTS:
            row(f"{route} jobs/s, {workers} worker(s)", functools.partial(_rate, route, workers))
    row("runsync p50/p95/p99 ms, Skiff worker", lambda r: r.latency.cell() if r.latency else "-")
    row("  handler in-process p50/p95/p99 ms", lambda r: in_process.cell())
    row("  runpod --rp_serve_api p50/p95/p99 ms", lambda r: runpod.cell())

    def overhead(r: ModeResult) -> str:
        if r.latency is None:
            return "-"
        value = r.latency.p50_ms - in_process.p50_ms
        return f"{value:.2f} ms {'MET' if value <= TARGET_OVERHEAD_MS else 'NOT MET'}"

    def best(r: ModeResult) -> str:
        value = max(t.jobs_per_s for t in (*r.run.values(), *r.runsync.values()))
        return f"{value:,.0f} {'MET' if value >= TARGET_JOBS_S else 'NOT MET'}"

    row(f"overhead p50 vs in-process (target <= {TARGET_OVERHEAD_MS:g} ms)", overhead)
    row(f"best jobs/s, one gateway (target >= {TARGET_JOBS_S:,.0f})", best)

    loaded = max(WORKER_COUNTS)  # "under load": the runs with the most workers

    def cluster_only(cell: Callable[[ModeResult], str]) -> Callable[[ModeResult], str]:
        return lambda r: cell(r) if r.variant.mode == "cluster" else "-"

    def requests(r: ModeResult) -> str:
        worst = max(r.run[loaded].requests_per_job, r.runsync[loaded].requests_per_job)
        verdict = "MET" if worst <= TARGET_SQS_REQUESTS_PER_JOB else "NOT MET"
        return f"{r.run[loaded].requests_per_job:.2f} / {r.runsync[loaded].requests_per_job:.2f} {verdict}"

    def gateway_cpu(r: ModeResult) -> str:
        worst = max(r.run[loaded].gateway_cpu_ms, r.runsync[loaded].gateway_cpu_ms)
        verdict = "MET" if worst <= TARGET_GATEWAY_CPU_MS else "NOT MET"
        return f"{r.run[loaded].gateway_cpu_ms:.2f} / {r.runsync[loaded].gateway_cpu_ms:.2f} {verdict}"

    def cost(r: ModeResult) -> str:
        worst = max(r.run[loaded].requests_per_job, r.runsync[loaded].requests_per_job)
        return f"${worst * SQS_PRICE_PER_MILLION:.2f}"

    under_load = f"/run / /runsync, {loaded} workers"
    row(f"SQS requests/job, {under_load} (target <= {TARGET_SQS_REQUESTS_PER_JOB:g})", cluster_only(requests))
    row(f"gateway CPU ms/job, {under_load} (target <= {TARGET_GATEWAY_CPU_MS:g})", cluster_only(gateway_cpu))
    row("SQS cost per 1M jobs (worse of the two)", cluster_only(cost))

    widths = [max(len(line[i]) for line in [headers, *rows]) for i in range(len(headers))]
    rule = "-+-".join("-" * w for w in widths)

    def fmt(cells: Sequence[str]) -> str:
        padded = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return " | ".join(padded)

    lines = [fmt(headers), rule, *(fmt(r) for r in rows), ""]
    lines.append(
        f"Settings: {opts.jobs} jobs per throughput run (cluster: {opts.cluster_jobs}), {opts.clients} concurrent "
        f"clients, worker concurrency {opts.concurrency} (concurrency_modifier), latency over {opts.samples} "
        f"sequential calls after {opts.warmup} warm-up calls."
    )
    if "moto" in outcome.sqs_calls:
        lines.append(
            "Note: moto's Python server costs ~5-7 ms a call here (measured in this run: one SendMessage "
            f"p50/p95/p99 {outcome.sqs_calls['moto'].cell()} ms): its cluster columns measure moto as much as Skiff."
        )
    if "fauxqs" in outcome.sqs_calls:
        lines.append(
            "fauxqs (https://github.com/kibertoad/fauxqs, Node.js, installed by scripts/install-fauxqs.sh): one "
            f"SendMessage p50/p95/p99 {outcome.sqs_calls['fauxqs'].cell()} ms in this run."
        )
    if outcome.sqs_calls:
        lines.append(
            "Unbatched (before): SKIFF_SQS_BATCHING=false, one SQS request per send, receive and delete. Batched: the "
            "default (SendMessageBatch / DeleteMessageBatch with a short linger, receives of up to 10 shared by the "
            "job-takes). SQS requests are every request the gateway and the controller made during the run, "
            "background polls included. "
            f"Cost assumes ${SQS_PRICE_PER_MILLION:.2f} per million requests (standard queue, us-east-1, after the "
            "free tier's first million a month; one batch is one request)."
        )
    lines.append("CPU ms per job of each process during each run (one machine, every process shares its cores):")
    for r in results:
        for kind, table in (("/run", r.run), ("/runsync", r.runsync)):
            for workers, t in table.items():
                what = f"{r.variant.label}: {kind} {workers} worker(s)"
                line = f"  {what}: {t.jobs} jobs in {t.seconds:.2f} s; {t.cpu_ms_per_job(r.variant.sqs_server)}"
                if r.variant.mode == "cluster":
                    line += f"; {t.requests_detail()}"
                lines.append(line)
    return "\n".join(lines)


# --------------------------------------------------------------------------- command line


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="tiny numbers of jobs and samples (for the test)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per throughput run (default 2000)")
    parser.add_argument("--cluster-jobs", type=int, default=None, help="jobs per cluster-mode run (default 400)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: embedded,cluster")
    parser.add_argument(
        "--sqs-servers", default=",".join(SQS_SERVERS), help="cluster mode's SQS servers, comma-separated: moto,fauxqs"
    )
    parser.add_argument(
        "--sqs-batching",
        default="off,on",
        help="cluster mode: SQS batching off (one request per message, the baseline), on (the default), or both",
    )
    parser.add_argument("--clients", type=int, default=64, help="requests in flight for the throughput runs")
    parser.add_argument("--worker-concurrency", type=int, default=16, help="jobs each worker holds at once")
    parser.add_argument("--samples", type=int, default=None, help="sequential latency samples (default 500)")
    args = parser.parse_args(argv)
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if not modes or unknown:
        parser.error(f"--modes takes a comma-separated list of {', '.join(MODES)}; got {args.modes!r}")
    servers = tuple(m.strip() for m in args.sqs_servers.split(",") if m.strip())
    if not servers or any(m not in SQS_SERVERS for m in servers):
        parser.error(
            f"--sqs-servers takes a comma-separated list of {', '.join(SQS_SERVERS)}; got {args.sqs_servers!r}"
        )
    switch = {"off": False, "on": True}
    batching_words = [m.strip() for m in args.sqs_batching.split(",") if m.strip()]
    if not batching_words or any(m not in switch for m in batching_words):
        parser.error(f"--sqs-batching takes off, on or off,on; got {args.sqs_batching!r}")
    batching = tuple(dict.fromkeys(switch[m] for m in batching_words))
    jobs = args.jobs or (40 if args.quick else 2000)
    cluster_jobs = args.cluster_jobs or (20 if args.quick and not args.jobs else min(jobs, 400))
    samples = args.samples or (20 if args.quick else 500)
    for name, value in (
        ("--jobs", jobs),
        ("--cluster-jobs", cluster_jobs),
        ("--clients", args.clients),
        ("--worker-concurrency", args.worker_concurrency),
        ("--samples", samples),
    ):
        if value < 1 or (name == "--samples" and value < 2):
            parser.error(f"{name} must be a positive number (samples at least 2); got {value}")
    return Options(
        modes,
        servers,
        batching,
        jobs,
        cluster_jobs,
        args.clients,
        args.worker_concurrency,
        samples,
        5 if args.quick else 50,
    )


def _exit_on_sigterm(signum: int, _frame: object) -> None:
    # SystemExit unwinds the context managers, so every process started here is stopped.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        outcome = run_all(opts)
    except (BenchmarkError, RuntimeError, AssertionError, httpx.HTTPError, aiohttp.ClientError) as err:
        print(f"benchmark failed: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every process started here has been stopped", file=sys.stderr)
        return 130
    print(render(outcome, opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
