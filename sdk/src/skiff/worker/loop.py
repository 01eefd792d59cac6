"""The job loop: take jobs from the gateway, run the handler, send results, obey stops.

It speaks the worker protocol of the official runpod SDK 1.12 request for request, so one worker
image runs on Skiff and on Runpod. Sources mirrored (runpod/serverless/modules/): rp_job.py
(job-take URL, `job_in_progress`, batch take, stop channel), rp_http.py (job-done/job-stream
bodies, `isStream`), rp_scale.py (concurrency, shutdown).

Where Skiff behaves better than runpod it keeps the wire format: a freed job slot is refilled at
once (runpod polls every second), network errors back off instead of spinning, a 401/403 says
which key is wrong, SIGTERM stops taking jobs at once and lets running ones finish.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skiff.aio import wait_event
from skiff.worker.config import GatewayConfig
from skiff.worker.handlers import Handler, Result, is_generator, run_job, run_streaming
from skiff.worker.log import log
from skiff.worker.progress import ProgressSender
from skiff.worker.transport import (
    Backoff,
    GatewayHttp,
    GatewayRejected,
    GatewayStatusError,
    TooManyRequests,
    describe_rejection,
    get_headers,
)


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
    """Takes and runs jobs until `request_shutdown`; `run` returns once the running jobs ended.

    `progress` is the sender that the handlers' progress updates go through: a job's result waits
    for its updates.
    """

    options: WorkerOptions
    gateway: GatewayConfig
    progress: ProgressSender
    concurrency: int = 1
    running: dict[str, _Running] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._shutdown = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._forced = False
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="skiff-job")
        self._http = GatewayHttp(self.gateway)
        # A long poll that failed this way is retried after a backoff.
        self._poll_errors: tuple[type[BaseException], ...] = (GatewayStatusError, *self._http.transport_errors)
        self._get_headers = get_headers(self.gateway)
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
            raise GatewayRejected(describe_rejection(status, url))
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
        await self._http.post_result(url, body, job_id, shutting_down=self._shutdown.is_set)

    async def _handle(self, job: dict[str, Any]) -> None:
        job_id = log.bind(job)  # its lines carry the request id until the job is done here
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
                result = await run_job(
                    handler, job, self._executor, worker_id=self.gateway.worker_id, hostname=self.gateway.hostname
                )
                is_stream = False
            if self.options.refresh_worker:
                log.info("refresh_worker flag set, stopping pod after job.", job_id)
                result["stopPod"] = True
            # Progress updates for this job must land before its result (see progress.py).
            if self.progress.has_pending(job_id):  # most jobs post none: skip the thread hop
                await asyncio.get_running_loop().run_in_executor(self._executor, self.progress.wait_flushed, job_id)
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
        finally:
            log.unbind(job_id)

    # ------------------------------------------------------------ job-stop

    async def _stop_signals(self, url: str) -> list[str]:
        reply = await self._http.get(url, self._get_headers)
        if reply.status == 204:
            return []
        if reply.status in (401, 403):
            raise GatewayRejected(describe_rejection(reply.status, url))
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
