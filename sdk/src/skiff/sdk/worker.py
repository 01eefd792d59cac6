"""The worker loop: take jobs from the gateway, run the handler, send results, ping, obey stops.

It speaks the worker protocol of the official runpod SDK 1.12 request for request, so one worker
image runs on Skiff and on Runpod. Sources mirrored (runpod/serverless/modules/): rp_job.py
(job-take URL, `job_in_progress`, batch take, stop channel), rp_http.py (job-done/job-stream
bodies, headers, `isStream`), rp_ping.py (heartbeat), rp_scale.py (concurrency, shutdown),
http_client.py (the `Authorization` header carries the bare key).

Where Skiff behaves better than runpod it keeps the wire format: a freed job slot is refilled at
once (runpod polls every second), network errors back off instead of spinning, a 401/403 says
which key is wrong, SIGTERM stops taking jobs at once and lets running ones finish.

The job loop talks HTTP through one aiohttp session, as runpod's worker does (rp_scale.py,
http_client.AsyncClientSession): httpx's async pool cost the worker ~2 ms of CPU per job on
request building and pool bookkeeping (benchmarks/gateway.py). aiohttp is imported only when the
loop starts, so `import skiff.serverless` stays light. The heartbeat thread and progress updates
are rare and synchronous, so they keep httpx.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import json
import os
import platform
import random
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from skiff import __version__
from skiff.aio import wait_event
from skiff.sdk import SDK_VERSION, log
from skiff.sdk import progress as progress_mod
from skiff.sdk.handlers import Handler, Result, is_generator, run_job, run_streaming

USER_AGENT = (
    f"Skiff-Python-SDK/{__version__} ({platform.system()} {platform.release()}; {platform.machine()}) "
    f"Language/Python {platform.python_version()}"
)

# runpod's jobs_fetcher_timeout: the gateway holds job-take and job-stop polls open below this.
TAKE_TIMEOUT_S = 90.0
POST_ATTEMPTS = 8  # ~1 minute of backoff: a restarting gateway must not lose a finished result
# Once the worker is shutting down, an unreachable gateway gets this long at most: the job's lease
# brings it back anyway, and a worker orphaned by a dead `skiff up` must not linger for a minute.
SHUTDOWN_POST_BUDGET_S = 5.0
CONNECT_TIMEOUT_S = 30.0
# Connections to the gateway at most: the two long polls plus one result post per running job
# stay well below it; a runaway concurrency_modifier queues its posts instead of opening sockets.
MAX_CONNECTIONS = 64
# uvicorn (the gateway) closes an idle keep-alive connection after 5 s; dropping ours first means
# a result post never goes out on a socket the server is closing at that moment.
KEEPALIVE_S = 4.0


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class GatewayConfig:
    """The worker's view of the gateway, from the RUNPOD_* environment the platform sets."""

    worker_id: str
    take_url: str
    done_template: str
    stream_template: str
    ping_url: str | None
    api_key: str
    ping_interval_s: float
    endpoint_id: str | None = None

    @classmethod
    def from_environ(cls, env: dict[str, str] | None = None) -> GatewayConfig | None:
        """None when RUNPOD_WEBHOOK_GET_JOB is unset: the worker is not under a platform (local mode)."""
        env = dict(os.environ) if env is None else env
        take = env.get("RUNPOD_WEBHOOK_GET_JOB")
        if take is None:
            return None
        worker_id = env.get("RUNPOD_POD_ID") or str(uuid.uuid4())
        ping = env.get("RUNPOD_WEBHOOK_PING")
        try:
            interval_ms = float(env.get("RUNPOD_PING_INTERVAL", "10000"))
        except ValueError:
            log.warn("RUNPOD_PING_INTERVAL is not a number of milliseconds; using 10000.")
            interval_ms = 10000.0
        return cls(
            worker_id=worker_id,
            # rp_job.py: `$ID` in the job-take URL is the worker id.
            take_url=take.replace("$ID", worker_id),
            # rp_http.py: `$RUNPOD_POD_ID` is the worker id; `$ID` becomes the job id per request.
            done_template=env.get("RUNPOD_WEBHOOK_POST_OUTPUT", "").replace("$RUNPOD_POD_ID", worker_id),
            stream_template=env.get("RUNPOD_WEBHOOK_POST_STREAM", "").replace("$RUNPOD_POD_ID", worker_id),
            ping_url=ping.replace("$RUNPOD_POD_ID", worker_id) if ping else None,
            api_key=env.get("RUNPOD_AI_API_KEY", ""),
            ping_interval_s=max(interval_ms / 1000.0, 0.1),
            endpoint_id=env.get("RUNPOD_ENDPOINT_ID"),
        )

    def take(self, batch_size: int, in_progress: bool) -> str:
        url = self.take_url
        if batch_size > 1:
            url = url.replace("/job-take/", "/job-take-batch/") + f"&batch_size={batch_size}"
        return url + f"&job_in_progress={'1' if in_progress else '0'}"

    @property
    def stop_url(self) -> str | None:
        # rp_job._job_stop_url: derived from the job-take URL, query string kept.
        if "/job-take/" not in self.take_url:
            return None
        return self.take_url.replace("/job-take/", "/job-stop/")

    def done_url(self, job_id: str, is_stream: bool) -> str:
        return self.done_template.replace("$ID", job_id) + f"&isStream={'true' if is_stream else 'false'}"

    def stream_url(self, job_id: str) -> str:
        # runpod's stream_result never passes is_stream, so job-stream always says false.
        return self.stream_template.replace("$ID", job_id) + "&isStream=false"

    def get_headers(self) -> dict[str, str]:
        # http_client.get_auth_header: the bare key, not "Bearer <key>".
        return {"Content-Type": "application/json", "Authorization": self.api_key, "User-Agent": USER_AGENT}

    def post_headers(self, job_id: str) -> dict[str, str]:
        # rp_http._transmit: a JSON body labelled as a form, plus a stray `charset` header.
        return {
            "Authorization": self.api_key,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/x-www-form-urlencoded",
            "charset": "utf-8",
            "X-Request-ID": job_id,
        }


def _safe_url(url: str) -> str:
    # Query strings may carry secrets; log only scheme, host and path.
    return url.split("?", 1)[0]


class Backoff:
    """Exponential backoff with jitter, reset on success."""

    def __init__(self, first: float = 0.5, cap: float = 30.0) -> None:
        self.first, self.cap, self.failures = first, cap, 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * (2**self.failures))
        self.failures += 1
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.failures = 0


class GatewayRejected(Exception):
    """The gateway answered 401/403: this worker's key is not accepted."""


class TooManyRequests(Exception):
    pass


class GatewayStatusError(Exception):
    """The gateway answered a status the protocol does not expect (typically a 5xx)."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"{_safe_url(url)} answered HTTP {status}")
        self.status = status


def _describe_rejection(status: int, url: str) -> str:
    return (
        f"The gateway rejected this worker's key (HTTP {status}) at {_safe_url(url)}. "
        "Check RUNPOD_AI_API_KEY: it must be the worker key issued for this endpoint."
    )


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _dumps(body: Result) -> str:
    return json.dumps(body, ensure_ascii=False)


def post_sync(config: GatewayConfig, url: str, body: Result, job_id: str) -> None:
    """POST a result body with retries, blocking (used off the event loop by progress updates)."""
    backoff = Backoff()
    with httpx.Client(timeout=30.0) as client:
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                response = client.post(url, content=_dumps(body), headers=config.post_headers(job_id))
            except httpx.TransportError as err:
                if attempt == POST_ATTEMPTS:
                    raise
                log.warn(f"Could not reach the gateway ({type(err).__name__}); retrying.", job_id)
            else:
                if response.status_code < 400:
                    return
                if not _retryable(response.status_code) or attempt == POST_ATTEMPTS:
                    response.raise_for_status()
            time.sleep(backoff.next_delay())


# --------------------------------------------------------------------------- fitness checks

_fitness_checks: list[Callable[[], Any]] = []


def register_fitness_check(func: Callable[[], Any]) -> Callable[[], Any]:
    """Decorator: run `func` (sync or async) once before the worker takes jobs; if it raises, the
    worker exits 1 so the orchestrator replaces it (runpod's rp_fitness.register_fitness_check)."""
    _fitness_checks.append(func)
    return func


async def run_fitness_checks() -> None:
    for check in list(_fitness_checks):
        name = getattr(check, "__name__", repr(check))
        try:
            returned = check()
            if inspect.isawaitable(returned):
                await returned
        except Exception as err:
            log.error(f"Fitness check {name} failed: {type(err).__name__}: {err}. Exiting.")
            sys.stdout.flush()
            os._exit(1)  # as runpod: non-daemon threads must not keep a broken worker alive
        log.info(f"Fitness check passed: {name}")


# --------------------------------------------------------------------------- heartbeat


class Heartbeat:
    """GET the ping URL every RUNPOD_PING_INTERVAL ms with the in-progress job ids (rp_ping.py).

    A thread, not an asyncio task: an async handler that blocks the event loop (common with model
    code) must not make the worker look dead. runpod uses a separate process for the same reason.
    """

    def __init__(self, config: GatewayConfig, job_ids: Callable[[], list[str]]) -> None:
        self._config = config
        self._job_ids = job_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skiff-heartbeat", daemon=True)

    @staticmethod
    def wanted(config: GatewayConfig) -> bool:
        # rp_ping.start_ping pings only with a key, a pod id and a ping URL.
        return bool(config.api_key and os.environ.get("RUNPOD_POD_ID") and config.ping_url)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        assert self._config.ping_url is not None
        interval = self._config.ping_interval_s
        headers = {"Authorization": self._config.api_key, "User-Agent": USER_AGENT}
        with httpx.Client(timeout=max(interval * 2, 5.0), headers=headers) as client:
            while not self._stop.is_set():
                params = {}
                ids = self._job_ids()
                if ids:  # requests drops a None param, so runpod omits job_id when idle
                    params["job_id"] = ",".join(ids)
                params["runpod_version"] = SDK_VERSION
                # httpx `params=` would replace the URL's own query string; requests (runpod) appends.
                sep = "&" if "?" in self._config.ping_url else "?"
                try:
                    response = client.get(f"{self._config.ping_url}{sep}{urllib.parse.urlencode(params)}")
                    if response.status_code in (401, 403):
                        log.error(_describe_rejection(response.status_code, self._config.ping_url))
                    log.trace(f"Heartbeat sent: {response.status_code}")
                except httpx.HTTPError as err:
                    log.warn(f"Ping failed ({type(err).__name__}: {err}); will retry.")
                self._stop.wait(interval)


# --------------------------------------------------------------------------- gateway HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class GatewayHttp:
    """The job loop's one HTTP session to the gateway: keep-alive connections, whole replies.

    Must be created inside the running event loop (aiohttp binds the session to it).
    """

    def __init__(self) -> None:
        import aiohttp  # here, not at module top: see the module docstring

        self._aiohttp = aiohttp
        # What counts as "the gateway could not be reached / answered garbage": retried with
        # backoff. InvalidURL and the like are bugs and propagate.
        self.transport_errors: tuple[type[BaseException], ...] = (
            aiohttp.ClientConnectionError,
            aiohttp.ClientPayloadError,
            aiohttp.ClientResponseError,
            TimeoutError,
        )
        # One timeout object for every request (read bounded by the long-poll timeout), built once.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_S),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=CONNECT_TIMEOUT_S, sock_connect=CONNECT_TIMEOUT_S, sock_read=TAKE_TIMEOUT_S
            ),
            # As runpod's session: proxies from the environment do not apply to the gateway.
            trust_env=False,
        )

    async def get(self, url: str, headers: dict[str, str]) -> Reply:
        async with self._session.get(url, headers=headers, allow_redirects=False) as response:
            return Reply(response.status, await response.read())

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> Reply:
        async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            return Reply(response.status, await response.read())

    def describe(self, err: BaseException) -> str:
        """A short name for a transport error; the same names the worker logged under httpx."""
        if isinstance(err, self._aiohttp.ClientConnectorError):
            return "ConnectError"
        if isinstance(err, TimeoutError):
            return "Timeout"
        return type(err).__name__

    async def close(self) -> None:
        await self._session.close()


# --------------------------------------------------------------------------- the loop


@dataclass
class WorkerOptions:
    handler: Handler
    return_aggregate_stream: bool = False
    refresh_worker: bool = False
    concurrency_modifier: Callable[[int], int] | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> WorkerOptions:
        handler = config.get("handler")
        if not callable(handler):
            raise ValueError('start() needs {"handler": <function taking the job dict>}')
        modifier = config.get("concurrency_modifier")
        if modifier is not None and not callable(modifier):
            raise ValueError("concurrency_modifier must be a function (current: int) -> int")
        return cls(
            handler=handler,
            return_aggregate_stream=bool(config.get("return_aggregate_stream", False)),
            refresh_worker=bool(config.get("refresh_worker", False)),
            concurrency_modifier=modifier,
        )


@dataclass
class _Running:
    job: dict[str, Any]
    task: asyncio.Task[None]


@dataclass
class WorkerLoop:
    options: WorkerOptions
    gateway: GatewayConfig
    concurrency: int = 1
    running: dict[str, _Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shutdown = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._forced = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="skiff-job")
        self._http = GatewayHttp()
        # A long poll that failed this way is retried after a backoff.
        self._poll_errors: tuple[type[BaseException], ...] = (GatewayStatusError, *self._http.transport_errors)
        self._get_headers = self.gateway.get_headers()
        self._modifier_warned = False

    # ------------------------------------------------------------ control

    def request_shutdown(self, reason: str) -> None:
        if self._shutdown.is_set():
            if reason.startswith("signal"):
                # Second signal: stop waiting for running jobs (their results are not sent; the
                # gateway's lease delivers them again).
                log.warn(f"{reason} again: stopping running jobs now.")
                self._forced = True
                for entry in list(self.running.values()):
                    entry.task.cancel()
            return
        log.info(f"Shutting down ({reason}): no new jobs; waiting for {len(self.running)} running job(s).")
        self._shutdown.set()

    @property
    def forced(self) -> bool:
        return self._forced

    def job_ids(self) -> list[str]:
        return list(self.running)

    def _next_concurrency(self) -> int:
        if self.options.concurrency_modifier is None:
            return self.concurrency
        try:
            wanted = self.options.concurrency_modifier(self.concurrency)
        except Exception as err:
            log.error(f"concurrency_modifier raised {type(err).__name__}: {err}; keeping {self.concurrency}.")
            return self.concurrency
        if isinstance(wanted, bool) or not isinstance(wanted, int) or wanted < 1:
            if not self._modifier_warned:
                log.error(f"concurrency_modifier returned {wanted!r}; it must return an int >= 1. Using 1.")
                self._modifier_warned = True
            return 1
        return wanted

    # ------------------------------------------------------------ job-take

    async def _take(self, count: int) -> list[dict[str, Any]]:
        url = self.gateway.take(count, in_progress=bool(self.running))
        reply = await self._http.get(url, self._get_headers)
        status = reply.status
        # rp_job.get_job: 204 = no work; 400 is what Runpod answers under FlashBoot: also no work.
        if status in (204, 400):
            return []
        if status in (401, 403):
            raise GatewayRejected(_describe_rejection(status, url))
        if status == 429:
            raise TooManyRequests()
        if status >= 300:
            raise GatewayStatusError(status, url)
        if not reply.body:
            return []
        try:
            payload = json.loads(reply.body)
        except ValueError:
            log.warn(f"job-take answered {status} with a body that is not JSON; ignoring it.")
            return []
        if isinstance(payload, dict):
            if "id" not in payload or "input" not in payload:
                log.error("job-take returned a job without id or input; ignoring it.")
                return []
            return [payload]
        if isinstance(payload, list):
            return [job for job in payload if isinstance(job, dict) and "id" in job]
        return []

    async def _wait_for_slot(self) -> None:
        self._slot_freed.clear()
        # Re-check every second: concurrency_modifier may raise the limit without a job ending.
        await wait_event(self._slot_freed, 1.0)

    async def take_loop(self) -> None:
        backoff = Backoff()
        while not self._shutdown.is_set():
            self.concurrency = self._next_concurrency()
            free = self.concurrency - len(self.running)
            if free <= 0:
                await self._wait_for_slot()
                continue
            started = time.monotonic()
            try:
                jobs = await self._take(free)
            except GatewayRejected as err:
                log.error(str(err))
                await asyncio.sleep(backoff.next_delay())
                continue
            except TooManyRequests:
                log.debug("job-take: too many requests; waiting 5 s.")
                await asyncio.sleep(5)
                continue
            except self._poll_errors as err:
                delay = backoff.next_delay()
                name = self._http.describe(err)
                log.warn(f"job-take failed ({name}: {err or 'no detail'}); retrying in {delay:.1f} s.")
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            for job in jobs:
                self._start(job)
            if not jobs and time.monotonic() - started < 0.05:
                # The gateway should hold the poll open; if it answers at once, do not spin.
                await asyncio.sleep(0.05)

    def _start(self, job: dict[str, Any]) -> None:
        job_id = str(job["id"])
        if job_id in self.running:
            log.warn("Job delivered again while still running here; ignoring the duplicate.", job_id)
            return
        task = asyncio.create_task(self._handle(job), name=f"job-{job_id}")
        self.running[job_id] = _Running(job, task)
        task.add_done_callback(functools.partial(self._finished, job_id))

    def _finished(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self.running.pop(job_id, None)
        self._slot_freed.set()

    # ------------------------------------------------------------ running a job

    async def _post(self, url: str, body: Result, job_id: str) -> None:
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        data = _dumps(body).encode()
        headers = self.gateway.post_headers(job_id)
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                reply = await self._http.post(url, data, headers)
            except self._http.transport_errors as err:
                if self._shutdown.is_set() and give_up_at is None:
                    give_up_at = loop.time() + SHUTDOWN_POST_BUDGET_S
                if attempt == POST_ATTEMPTS or (give_up_at is not None and loop.time() >= give_up_at):
                    log.error(f"Could not send the result to {_safe_url(url)}: {err}", job_id)
                    return
                log.warn(f"Could not reach the gateway ({self._http.describe(err)}); retrying.", job_id)
            else:
                status = reply.status
                if status < 400:
                    return
                if status in (401, 403):
                    log.error(_describe_rejection(status, url), job_id)
                    return
                if not _retryable(status) or attempt == POST_ATTEMPTS:
                    text = reply.body[:2000].decode("utf-8", "replace")[:500]
                    log.error(f"{_safe_url(url)} answered {status}: {text}", job_id)
                    return
            await asyncio.sleep(backoff.next_delay())

    async def _handle(self, job: dict[str, Any]) -> None:
        job_id = str(job["id"])
        handler = self.options.handler
        try:
            if is_generator(handler):

                async def send_chunk(chunk: Result) -> None:
                    await self._post(self.gateway.stream_url(job_id), chunk, job_id)

                result = await run_streaming(
                    handler, job, self.options.return_aggregate_stream, send_chunk, self._executor
                )
                is_stream = True
            else:
                result = await run_job(handler, job, self._executor)
                is_stream = False
            if self.options.refresh_worker:
                log.info("refresh_worker flag set, stopping pod after job.", job_id)
                result["stopPod"] = True
            # Progress updates for this job must land before its result (see progress.py).
            if progress_mod.has_pending(job_id):  # most jobs post none: skip the thread hop
                await asyncio.get_running_loop().run_in_executor(self._executor, progress_mod.wait_flushed, job_id)
            await self._post(self.gateway.done_url(job_id, is_stream), result, job_id)
            log.info("Finished.", job_id)
            if result.get("stopPod"):
                # On Runpod the platform replaces the pod; exiting does the same anywhere.
                self.request_shutdown("refresh_worker")
        except asyncio.CancelledError:
            log.info("Job stopped.", job_id)
            raise
        except Exception as err:  # a bug here must not kill the loop
            log.error(f"Error handling job: {type(err).__name__}: {err}", job_id)

    # ------------------------------------------------------------ job-stop

    async def _stop_signals(self, url: str) -> list[str]:
        reply = await self._http.get(url, self._get_headers)
        if reply.status == 204:
            return []
        if reply.status in (401, 403):
            raise GatewayRejected(_describe_rejection(reply.status, url))
        if reply.status == 429:
            raise TooManyRequests()
        if reply.status >= 300:
            raise GatewayStatusError(reply.status, url)
        try:
            payload = json.loads(reply.body)
        except ValueError:
            return []
        ids = payload.get("jobsToStop", []) if isinstance(payload, dict) else []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    async def stop_loop(self) -> None:
        url = self.gateway.stop_url
        if url is None:
            log.warn("The job-take URL has no /job-take/ segment; per-job stop is disabled.")
            return
        backoff = Backoff(first=1.0)
        while True:
            try:
                ids = await self._stop_signals(url)
            except TooManyRequests:
                await asyncio.sleep(5)
                continue
            except GatewayRejected as err:
                log.error(str(err))
                await asyncio.sleep(backoff.next_delay())
                continue
            except self._poll_errors as err:
                log.debug(f"job-stop poll failed ({self._http.describe(err)}: {err}).")
                await asyncio.sleep(backoff.next_delay())
                continue
            backoff.reset()
            for job_id in ids:
                entry = self.running.get(job_id)
                if entry is not None:
                    log.info("Stopping job.", job_id)
                    entry.task.cancel()
            if not ids:
                await asyncio.sleep(1.0)  # as runpod: a floor in case the gateway does not long-poll

    # ------------------------------------------------------------ lifecycle

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request_shutdown, f"signal {sig.name}")
            except (ValueError, RuntimeError, NotImplementedError):
                log.warn("Signal handling works only in the main thread; SIGTERM will not drain jobs.")
                return

    async def run(self) -> None:
        self._install_signals()
        take = asyncio.create_task(self.take_loop(), name="job-take")
        stop = asyncio.create_task(self.stop_loop(), name="job-stop")
        try:
            await self._shutdown.wait()
            # Drop an open long-poll: a draining worker is not handed new jobs by the gateway.
            take.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await take
            while self.running:
                await asyncio.wait([entry.task for entry in self.running.values()])
        finally:
            take.cancel()
            stop.cancel()
            await asyncio.gather(take, stop, return_exceptions=True)
            await self._http.close()
            self._executor.shutdown(wait=not self._forced, cancel_futures=True)


def run_worker(config: dict[str, Any], gateway: GatewayConfig) -> int:
    """Run the loop until SIGTERM/SIGINT or refresh_worker; returns the process exit code."""
    options = WorkerOptions.from_config(config)
    try:
        import aiohttp  # noqa: F401  (checked before any job is taken; GatewayHttp uses it)
    except ImportError as err:
        log.error(
            f"The worker runtime needs aiohttp to talk to the gateway ({err}). "
            "Add `aiohttp>=3.9` to the worker image (the runpod SDK needs it too)."
        )
        return 1

    async def main() -> bool:
        await run_fitness_checks()
        loop = WorkerLoop(options, gateway)
        heartbeat = Heartbeat(gateway, loop.job_ids) if Heartbeat.wanted(gateway) else None
        if heartbeat is not None:
            heartbeat.start()
        log.info(f"Worker {gateway.worker_id} taking jobs from {_safe_url(gateway.take_url)}.")
        try:
            await loop.run()
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        return loop.forced

    forced = asyncio.run(main())
    log.info("Worker stopped.")
    if forced:
        # Threads still running a stopped sync handler would block interpreter exit.
        sys.stdout.flush()
        os._exit(1)
    return 0
