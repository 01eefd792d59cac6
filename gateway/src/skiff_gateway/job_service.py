"""The job lifecycle: accept, hand out under a lease, finish, cancel, retry, expire.

At-least-once and nothing lost: a job is stored and enqueued before the client hears its id;
the queue message is deleted only once the result is stored; every status change is a
compare-and-set in the job store, so races between replicas, workers and the sweeper resolve to
exactly one winner.

Big payloads: an input or output whose JSON reaches `payload_inline_max_bytes` is put in the
PayloadStore and the record carries `{"$skiff_payload": ref}` instead, so the queue and the job
store only ever move small records (Redis memory, SQS's 256 KiB message limit). References are
resolved only where the value leaves Skiff (job-take, client reads, webhooks); small values never
touch the payload store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import orjson

from skiff_core import tracing
from skiff_core.config import Settings
from skiff_core.jobs import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RUN_RETENTION_S,
    RUNSYNC_RETENTION_S,
    JobRecord,
    JobStatus,
    new_job_id,
)
from skiff_core.payloads.base import (
    PayloadKind,
    PayloadMissing,
    PayloadStore,
    dereference,
    payload_ref,
    reference,
    stays_inline,
)
from skiff_core.queue.base import Delivery, JobQueue
from skiff_core.requeue import requeue_worker_jobs
from skiff_core.spec import EndpointSpec
from skiff_core.store.base import JobRecords, JobStreams, StopSignals
from skiff_gateway import job_log
from skiff_gateway.http import ApiError, interruptible, parse_duration_ms
from skiff_gateway.webhooks import WebhookSender, webhook_problem
from skiff_gateway.workers import WorkerTracker

log = logging.getLogger("skiff.gateway")

RETRYABLE = (JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED)
# Stored payloads outlive their job's planned end by this much: the sweeper deletes them with the
# record, and the store's own expiry is only the safety net for records that were never swept.
PAYLOAD_EXPIRY_MARGIN_S = 3600.0
# A draining worker's job-take is answered empty after this long (or at once when it is being
# stopped): long enough that its take loop does not spin, short enough that an SDK which looks at
# its SIGTERM only between takes (runpod's) notices it promptly.
DRAINING_TAKE_WAIT_S = 1.0
_NOT_GIVEN: Any = object()
# Retries of removing the record of a job whose enqueue failed, when the store failed too:
# about ten minutes in all.
UNQUEUED_REMOVAL_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, *([10.0] * 59))
# Handed-out records kept for job-done, at most (the oldest go first: a worker that died with a
# job never reports on it).
MAX_HANDED = 100_000


def _running_timeout_error(job: JobRecord, now: float) -> str:
    if job.started_at is not None and now < job.started_at + job.execution_timeout_s:
        return f"job expired: its ttl of {job.ttl_s:g}s (counted from submission) passed while it ran"
    return f"execution timeout: the job ran longer than {job.execution_timeout_s:g}s"


class JobServiceStore(JobRecords, JobStreams, StopSignals, Protocol):
    """What the job lifecycle needs of the job store: records, their streams, stop signals."""


class JobService:
    def __init__(
        self,
        settings: Settings,
        queue: JobQueue,
        store: JobServiceStore,
        workers: WorkerTracker,
        webhooks: WebhookSender,
        payloads: PayloadStore,
        on_enqueue: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.queue = queue
        self.store = store
        self.workers = workers
        self.webhooks = webhooks
        self.payloads = payloads
        self.on_enqueue = on_enqueue
        # Told of every job this replica moves to a final status (metrics, job logs).
        self.on_final: Callable[[JobRecord], None] | None = None
        self.on_submit: Callable[[JobRecord], None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # Records of the jobs this replica handed out, as claimed, until their result comes back:
        # job-done reads its job from here instead of the store (see finish).
        self._handed: dict[str, JobRecord] = {}

    # ----------------------------------------------------------------- client side
    async def submit(
        self,
        spec: EndpointSpec,
        body: Any,
        *,
        sync: bool,
        request_id: str | None = None,
        traceparent: str | None = None,
    ) -> JobRecord:
        if not isinstance(body, dict):
            raise ApiError(400, 'request body must be a JSON object like {"input": {...}}')
        if "input" not in body:
            raise ApiError(400, 'request body must contain an "input" field')
        webhook = body.get("webhook")
        if webhook is not None and (problem := webhook_problem(webhook)) is not None:
            raise ApiError(400, problem)
        policy = body.get("policy") or {}
        if not isinstance(policy, dict):
            raise ApiError(400, "policy must be an object")
        execution_timeout = parse_duration_ms(policy.get("executionTimeout"), "policy.executionTimeout")
        ttl = parse_duration_ms(policy.get("ttl"), "policy.ttl")
        low_priority = policy.get("lowPriority", False)
        if not isinstance(low_priority, bool):
            raise ApiError(400, "policy.lowPriority must be true or false")
        now = time.time()
        job = JobRecord(
            id=new_job_id(),
            endpoint=spec.name,
            webhook=webhook,
            execution_timeout_s=execution_timeout or spec.execution_timeout,
            ttl_s=ttl or spec.job_ttl,
            low_priority=low_priority,
            sync=sync,
            created_at=now,
            request_id=request_id,
        )
        job.deadline_at = now + job.ttl_s
        tracing.accepted(job, traceparent)
        # The input must outlive every delivery the job may get, then its retention.
        lifetime = job.ttl_s + job.execution_timeout_s * (spec.max_retries + 1) + RUN_RETENTION_S
        # Stored before the record that references it, so a record never points at nothing.
        job.input = await self._by_reference(job.id, "input", body["input"], now + lifetime)
        await self.store.create(job)
        try:
            await self.queue.enqueue(spec.name, job.id, low_priority=low_priority)
        except BaseException:
            # The client hears an error, so no record may stay behind to be counted as queued.
            # Should the message have gone out after all, job-take finds no record and drops it.
            await self._forget_unqueued(job)
            raise
        if self.on_enqueue is not None:
            self.on_enqueue(spec.name)
        if self.on_submit is not None:
            self.on_submit(job)
        return job

    async def _forget_unqueued(self, job: JobRecord) -> None:
        try:
            await self._remove(job)
        except Exception as exc:
            # The store is down or its disk full too: keep trying in the background, so the
            # record is gone once the store is back instead of counted as queued until its TTL.
            log.warning("could not remove job %s after its enqueue failed (%r); retrying", job.id, exc)
            task = asyncio.create_task(self._remove_later(job))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _remove(self, job: JobRecord) -> None:
        await self.store.delete(job.id)
        if payload_ref(job.input) is not None:
            await self.payloads.delete(job.id)

    async def _remove_later(self, job: JobRecord) -> None:
        for delay in UNQUEUED_REMOVAL_BACKOFF_S:
            await asyncio.sleep(delay)
            try:
                await self._remove(job)
                return
            except Exception:
                continue
        # Past that, the sweeper times the record out at its deadline (its TTL).
        log.error("gave up removing job %s after its enqueue failed; it times out at its TTL", job.id)

    async def get(self, spec: EndpointSpec, job_id: str) -> JobRecord:
        """The job as a client sees it: a stored output is fetched back."""
        return await self.resolved(await self._stored(spec, job_id))

    async def wait_final(self, job_id: str, timeout: float, *, fresh: JobRecord | None = None) -> JobRecord | None:
        """JobStore.wait_final for a client (/runsync, /status?wait=): a stored output is fetched back."""
        job = await self.store.wait_final(job_id, timeout, fresh=fresh)
        return None if job is None else await self.resolved(job)

    async def resolved(self, job: JobRecord) -> JobRecord:
        """`job` with its output read back from the payload store when it was stored there."""
        if payload_ref(job.output) is None:
            return job
        try:
            output = await dereference(self.payloads, job.output)
        except PayloadMissing:
            # Only when the record outlived its payload (deleted by hand, bucket lifecycle).
            log.warning("output of job %s is gone from the payload store", job.id)
            output = None
        return job.model_copy(update={"output": output})

    async def _stored(self, spec: EndpointSpec, job_id: str) -> JobRecord:
        job = await self.store.get(job_id)
        if job is None or job.endpoint != spec.name:
            raise ApiError(404, f"job {job_id!r} not found on endpoint {spec.name!r} (it may have expired)")
        return job

    async def cancel(self, spec: EndpointSpec, job_id: str) -> JobRecord:
        job = await self._stored(spec, job_id)
        if job.status in FINAL_STATUSES:
            return job
        updated = await self.store.transition(
            job_id, expect=ACTIVE_STATUSES, **self._final_changes(job, JobStatus.CANCELLED)
        )
        if updated is None:  # it finished meanwhile
            return await self._stored(spec, job_id)
        await self._after_final(spec, job, updated)
        return updated

    async def retry(self, spec: EndpointSpec, job_id: str) -> JobRecord:
        job = await self._stored(spec, job_id)
        if job.status not in RETRYABLE:
            raise ApiError(
                400, f"only FAILED, TIMED_OUT or CANCELLED jobs can be retried; job {job_id} is {job.status}"
            )
        now = time.time()
        updated = await self.store.transition(
            job_id,
            expect=RETRYABLE,
            status=JobStatus.IN_QUEUE,
            output=None,
            error=None,
            started_at=None,
            completed_at=None,
            worker_id=None,
            receipt=None,
            created_at=now,
            deadline_at=now + job.ttl_s,
        )
        if updated is None:
            raise ApiError(409, f"job {job_id} changed state while being retried; try again")
        await self.queue.enqueue(spec.name, job_id, low_priority=job.low_priority)
        if self.on_enqueue is not None:
            self.on_enqueue(spec.name)
        return updated

    async def purge(self, spec: EndpointSpec) -> int:
        removed = 0
        for job_id in await self.queue.purge(spec.name):
            job = await self.store.get(job_id)
            if job is None:
                continue
            updated = await self.store.transition(
                job_id, expect=(JobStatus.IN_QUEUE,), **self._final_changes(job, JobStatus.CANCELLED)
            )
            if updated is not None:
                removed += 1
                await self._after_final(spec, job, updated)
        return removed

    async def next_stream_items(self, spec: EndpointSpec, job_id: str, wait: float) -> tuple[JobRecord, list[Any]]:
        """New stream items since the last /stream call (Runpod hands each chunk out once)."""
        job = await self._stored(spec, job_id)
        items = await self.store.read_stream(job_id, job.stream_read)
        if not items and not job.status.final and wait > 0:
            await self.store.wait_stream(job_id, job.stream_read, wait)
            job = await self._stored(spec, job_id)
            items = await self.store.read_stream(job_id, job.stream_read)
        if items:
            updated = await self.store.transition(
                job_id, expect=tuple(JobStatus), stream_read=job.stream_read + len(items)
            )
            job = updated or job
        return job, items

    # ----------------------------------------------------------------- worker side
    async def take(self, spec: EndpointSpec, worker_id: str, max_jobs: int, wait: float) -> list[dict[str, Any]]:
        worker = self.workers.taking(worker_id, spec.name)
        if worker.draining:
            await asyncio.sleep(min(wait, DRAINING_TAKE_WAIT_S))
            return []
        deliveries = await self._receive(spec, worker_id, max_jobs, wait)
        handed: list[dict[str, Any]] = []
        now = time.time()
        for delivery in deliveries:
            claim = await self.store.claim(
                delivery.job_id,
                worker_id=worker_id,
                receipt=delivery.receipt,
                now=now,
                retries=delivery.receive_count - 1,
                execution_id=tracing.execution_id(),
            )
            if claim.outcome == "expired" and claim.job is not None:
                await self._expire(spec, claim.job, delivery.receipt)
                continue
            if claim.outcome != "claimed" or claim.job is None:
                # Cancelled, purged or expired while queued: the message has no more work in it.
                await self.queue.delete(spec.name, delivery.receipt)
                continue
            job = claim.job
            try:
                job_input = await dereference(self.payloads, job.input)
            except PayloadMissing:
                await self._fail(spec, job, "the job's input is gone from the payload store")
                continue
            job_log.transition(job)
            self._remember_handed(job)
            given = {"id": job.id, "input": job_input}
            if job.request_id:
                given["requestId"] = job.request_id
            if job.trace:
                given["traceparent"] = tracing.worker_traceparent(job)
            handed.append(given)
        if handed:
            self.workers.took(worker, [j["id"] for j in handed])
        return handed

    async def _receive(self, spec: EndpointSpec, worker_id: str, max_jobs: int, wait: float) -> list[Delivery]:
        """The queue's long poll, given up (nothing received) if the worker is drained meanwhile.

        Only the wait on the queue is interruptible: once messages are in hand they are handed out.
        A receive interrupted just as it returned loses its messages to their lease, as one whose
        worker hung up does; they are delivered again when it runs out."""
        got = await interruptible(
            self.queue.receive(spec.name, max_messages=max_jobs, lease=self._lease(spec), wait=wait),
            self.workers.takes(worker_id),
        )
        return [] if got is None else got

    def _remember_handed(self, job: JobRecord) -> None:
        self._handed.pop(job.id, None)  # re-inserted last: the oldest entries go first
        self._handed[job.id] = job
        while len(self._handed) > MAX_HANDED:
            del self._handed[next(iter(self._handed))]

    async def _job_for_result(self, spec: EndpointSpec, worker_id: str, job_id: str, inline: bool) -> JobRecord:
        """The job a worker reports a result for: the record as this replica handed it to that
        worker when it did, else the stored one. Only fields that never change after creation are
        read from a handed record (its endpoint, sync, webhook); its status and holder are checked
        again, atomically, by the result's compare-and-set. An output big enough for the payload
        store is checked against the stored record first, so a late duplicate never overwrites the
        payload of the result that stands."""
        handed = self._handed.get(job_id)
        if handed is not None and handed.worker_id == worker_id and handed.endpoint == spec.name:
            del self._handed[job_id]
            if inline:
                return handed
        return await self._stored(spec, job_id)

    async def finish(self, spec: EndpointSpec, worker_id: str, job_id: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "job-done body must be a JSON object")
        output = body.get("output")
        if body.get("status") == JobStatus.IN_PROGRESS.value:
            # runpod.serverless.progress_update posts {"status": "IN_PROGRESS", "output": ...}.
            job = await self._stored(spec, job_id)
            self._require_holder(job, worker_id, "progress")
            if job.status is JobStatus.IN_PROGRESS:
                stored = await self._by_reference(job_id, "output", output, self._output_expiry(job))
                await self.store.transition(job_id, expect=(JobStatus.IN_PROGRESS,), holder=worker_id, output=stored)
            await self._extend_lease(spec, job)
            return
        encoded = None if output is None or isinstance(output, bool | int | float) else orjson.dumps(output)
        inline = encoded is None or stays_inline(output, encoded, self.settings.payload_inline_max_bytes)
        job = await self._job_for_result(spec, worker_id, job_id, inline)
        self._require_holder(job, worker_id, "result")
        self.workers.seen(worker_id, spec.name)
        self.workers.finished(worker_id, spec.name, job_id, by_worker=True)
        if body.get("stopPod") is True:
            # refresh_worker: the runpod SDK only says so and leaves the restart to the platform
            # (rp_job.run_job); the controller replaces the worker once it holds nothing.
            log.info("worker %s of %s asked to be replaced after job %s (stopPod)", worker_id, spec.name, job_id)
            self.workers.replace(worker_id, spec.name)
        if job.status is not JobStatus.IN_PROGRESS:
            # Checked before storing a big output too, so a late duplicate cannot overwrite the
            # payload of the result that stands.
            self._ignore_result(job, worker_id)
            return
        error = body.get("error")
        status = JobStatus.FAILED if error else JobStatus.COMPLETED
        changes = self._final_changes(job, status)
        changes["output"] = await self._by_reference(
            job_id, "output", output, self._output_expiry(job), encoded=encoded
        )
        changes["error"] = error
        # Re-checks the status and the holder: the job may have been re-queued and re-taken, or
        # cancelled, since it was read (or handed out).
        updated = await self.store.transition(job_id, expect=(JobStatus.IN_PROGRESS,), holder=worker_id, **changes)
        if updated is None:
            current = await self._stored(spec, job_id)
            self._require_holder(current, worker_id, "result")  # re-queued and re-taken meanwhile
            self._ignore_result(current, worker_id)
            return
        await self._after_final(spec, job, updated, output=output)

    @staticmethod
    def _require_holder(job: JobRecord, worker_id: str, what: str) -> None:
        """Only the worker the job was last handed to may report on it. Another one (a worker whose
        job was re-queued after it went silent, a bug, a forged post) gets 409, and the job keeps
        its holder's word. A final job keeps its last holder, whose late reports stay harmless."""
        if job.worker_id == worker_id:
            return
        log.warning(
            "refused %s for job %s from worker %s: the job is %s and held by %s",
            what,
            job.id,
            worker_id,
            job.status,
            job.worker_id or "no worker",
        )
        raise ApiError(409, f"job {job.id} is not held by worker {worker_id!r}; only its holder may report on it")

    @staticmethod
    def _ignore_result(job: JobRecord, worker_id: str) -> None:
        # Cancelled or timed out meanwhile, or a late duplicate from a worker whose lease was
        # lost: the first final state stands.
        log.info("ignoring result for job %s from %s: job is already %s", job.id, worker_id, job.status)

    async def add_stream(self, spec: EndpointSpec, worker_id: str, job_id: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise ApiError(400, "job-stream body must be a JSON object")
        job = await self.store.get(job_id)
        if job is None or job.endpoint != spec.name:
            raise ApiError(404, f"job {job_id!r} not found on endpoint {spec.name!r}")
        self._require_holder(job, worker_id, "stream chunk")
        if job.status is not JobStatus.IN_PROGRESS:
            return
        item = {"output": body["output"]} if "output" in body else body
        await self.store.append_stream(job_id, [item])

    async def ping(self, spec: EndpointSpec, worker_id: str, job_ids: list[str]) -> None:
        self.workers.seen(worker_id, spec.name, job_ids)
        for job_id in job_ids:
            job = await self.store.get(job_id)
            if job is not None and job.status is JobStatus.IN_PROGRESS and job.worker_id == worker_id:
                await self._extend_lease(spec, job)
            elif job is None or job.status in (JobStatus.CANCELLED, JobStatus.TIMED_OUT):
                # The worker still runs a job that was stopped. The runpod SDK drops a stop signal
                # that arrives before the job's task exists (rp_scale.JobScaler.stop_job), so
                # repeat it on every ping until the worker lets go of the job.
                await self.store.signal_stop(worker_id, job_id)

    # ----------------------------------------------------------------- housekeeping
    async def release_worker_jobs(self, worker_id: str, spec_of: Callable[[str], EndpointSpec | None]) -> int:
        """A worker died or went silent: make its jobs visible again now instead of at lease expiry."""
        endpoints = await requeue_worker_jobs(self.store, self.queue, worker_id, spec_of)
        if self.on_enqueue is not None:
            for endpoint in dict.fromkeys(endpoints):
                self.on_enqueue(endpoint)
        self.workers.forget(worker_id)
        return len(endpoints)

    async def sweep(self, spec_of: Callable[[str], EndpointSpec | None], now: float | None = None) -> int:
        """Act on every passed deadline: TTL, execution timeout, retention."""
        now = time.time() if now is None else now
        acted = 0
        for job in await self.store.due(now):
            spec = spec_of(job.endpoint)
            if job.status in FINAL_STATUSES:
                await self._delete(job)
            elif job.status is JobStatus.IN_QUEUE:
                if spec is not None:
                    await self._expire(spec, job, None)
                else:
                    await self._delete(job)
            else:
                changes = self._final_changes(job, JobStatus.TIMED_OUT)
                changes["error"] = _running_timeout_error(job, now)
                updated = await self.store.transition(job.id, expect=(JobStatus.IN_PROGRESS,), **changes)
                if updated is not None:
                    if job.worker_id:
                        await self.store.signal_stop(job.worker_id, job.id)
                    if spec is not None:
                        await self._after_final(spec, job, updated)
            acted += 1
        return acted

    async def sweep_dead_letters(self, spec: EndpointSpec) -> int:
        failed = 0
        for delivery in await self.queue.receive_dead(spec.name, max_messages=10, lease=30):
            job = await self.store.get(delivery.job_id)
            if job is not None and job.status in ACTIVE_STATUSES:
                changes = self._final_changes(job, JobStatus.FAILED)
                changes["error"] = (
                    f"job was delivered {spec.max_retries + 1} times and no worker finished it "
                    f"(max_retries = {spec.max_retries}); the last worker was lost"
                )
                updated = await self.store.transition(job.id, expect=ACTIVE_STATUSES, **changes)
                if updated is not None:
                    failed += 1
                    await self._after_final(spec, job, updated)
            await self.queue.delete_dead(spec.name, delivery.receipt)
        return failed

    # ----------------------------------------------------------------- helpers
    async def _by_reference(
        self, job_id: str, kind: PayloadKind, value: Any, expires_at: float, *, encoded: bytes | None = None
    ) -> Any:
        """`value` itself when small (no I/O), else stored in the payload store and referenced.
        `encoded`: its JSON, when the caller has it already."""
        if value is None or isinstance(value, bool | int | float):
            return value  # cannot reach the threshold: skip encoding on the hot path
        return await reference(
            self.payloads,
            job_id,
            kind,
            value,
            inline_max_bytes=self.settings.payload_inline_max_bytes,
            expires_at=expires_at,
            encoded=encoded,
        )

    @staticmethod
    def _output_expiry(job: JobRecord) -> float:
        retention = RUNSYNC_RETENTION_S if job.sync else RUN_RETENTION_S
        return time.time() + retention + PAYLOAD_EXPIRY_MARGIN_S

    async def _delete(self, job: JobRecord) -> None:
        """Drop the record at the end of its retention, then any payloads it referenced."""
        await self.store.delete(job.id)
        # A retried job may have left an output payload behind while its record shows none: the
        # retries counter says payloads may exist even without a reference in sight.
        if payload_ref(job.input) is None and payload_ref(job.output) is None and not job.retries:
            return
        try:
            await self.payloads.delete(job.id)
        except Exception:
            # The record is gone already; the store's own expiry removes the leftovers.
            log.exception("could not delete the payloads of job %s", job.id)

    async def _fail(self, spec: EndpointSpec, job: JobRecord, error: str) -> None:
        changes = self._final_changes(job, JobStatus.FAILED)
        changes["error"] = error
        updated = await self.store.transition(job.id, expect=ACTIVE_STATUSES, **changes)
        if updated is not None:
            await self._after_final(spec, job, updated)

    def _lease(self, spec: EndpointSpec) -> float:
        return self.settings.lease_s

    async def _extend_lease(self, spec: EndpointSpec, job: JobRecord) -> None:
        if job.receipt:
            await self.queue.extend(spec.name, job.receipt, self._lease(spec))

    async def _expire(self, spec: EndpointSpec, job: JobRecord, receipt: str | None) -> None:
        changes = self._final_changes(job, JobStatus.TIMED_OUT)
        changes["error"] = f"job expired: it waited in the queue longer than its ttl of {job.ttl_s:g}s"
        updated = await self.store.transition(job.id, expect=(JobStatus.IN_QUEUE,), **changes)
        if receipt is not None:
            await self.queue.delete(spec.name, receipt)
        if updated is not None:
            await self._after_final(spec, job, updated)

    @staticmethod
    def _final_changes(job: JobRecord, status: JobStatus) -> dict[str, Any]:
        now = time.time()
        retention = RUNSYNC_RETENTION_S if job.sync else RUN_RETENTION_S
        return {"status": status, "completed_at": now, "deadline_at": now + retention}

    async def _after_final(
        self, spec: EndpointSpec, before: JobRecord, after: JobRecord, *, output: Any = _NOT_GIVEN
    ) -> None:
        """Release the worker and the queue message, send the webhook. `output`: the final output
        when the caller still holds it, so a stored one need not be read back for the webhook."""
        if self.on_final is not None:
            self.on_final(after)
        if before.status is JobStatus.IN_PROGRESS and before.worker_id:
            if after.status is JobStatus.CANCELLED:
                await self.store.signal_stop(before.worker_id, after.id)
            self.workers.finished(before.worker_id, spec.name, after.id)
        receipt = after.receipt or before.receipt
        if receipt:
            await self.queue.delete(spec.name, receipt)
        if after.webhook:
            if output is not _NOT_GIVEN or payload_ref(after.output) is None:
                body = after.client_view()
                if output is not _NOT_GIVEN and output is not None:
                    body["output"] = output
                self.webhooks.send(after.webhook, body, after.endpoint)
            else:
                # Reading a stored output back must not hold up the caller (a worker's job-done).
                task = asyncio.create_task(self._send_resolved_webhook(after.webhook, after))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _send_resolved_webhook(self, url: str, job: JobRecord) -> None:
        self.webhooks.send(url, (await self.resolved(job)).client_view(), job.endpoint)
