"""JobQueue on any SQS-compatible service (AWS SQS, ElasticMQ, LocalStack, moto, fauxqs).

Per endpoint there are three queues, created or found by name in `ensure`:
  <prefix><endpoint>       normal priority
  <prefix><endpoint>-low   low priority, handed out only when the normal queue is empty
  <prefix><endpoint>-dlq   dead letters; both queues above redrive into it after `max_receives`
Queues that vanish later (deleted by hand, an SQS-compatible server restarted without its state)
are made again by the next call that finds one missing, with the settings of the last `ensure`;
an endpoint this process never ensured raises QueueMissing instead.

Calls go out through skiff_core.queue.sqs_api (SQS's JSON protocol on aiohttp, signed and
configured by botocore), with one connection pool per process.

AWS API reference pages relied on (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/):
API_CreateQueue.html, API_GetQueueUrl.html, API_SetQueueAttributes.html (RedrivePolicy,
MessageRetentionPeriod), API_SendMessage.html, API_ReceiveMessage.html (WaitTimeSeconds 0-20,
MaxNumberOfMessages 1-10, VisibilityTimeout, MessageSystemAttributeNames ApproximateReceiveCount
and SentTimestamp in epoch ms), API_ChangeMessageVisibility.html (counts from the call, 12 h cap),
API_DeleteMessage.html (ReceiptHandleIsInvalid), API_DeleteMessageBatch.html,
API_GetQueueAttributes.html (ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible).

Batching (on unless `batch_linger_s` is None; SQS bills per request): sends and deletes go out
as SendMessageBatch / DeleteMessageBatch (skiff_core.queue.sqs_batch), each caller still waiting
for its own entry, so an enqueue returns only once SQS holds its message and a delete only once
SQS has dropped it. Job-takes of an endpoint park in an `_Inbox`: a few pollers per endpoint
receive up to 10 messages a call for all of them, and what a call brings beyond the parked
takers' wants is held for the next taker. A held message is on lease to this process: it is
handed out within `hold_s` (at most a tenth of the lease, so a worker's lease is never more than
10% short) or made visible again with ChangeMessageVisibilityBatch 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from skiff_core.outages import QueueMissing, log_failure
from skiff_core.queue.base import Delivery, QueueStats
from skiff_core.queue.sqs_api import SqsApi
from skiff_core.queue.sqs_batch import MAX_BATCH, Batcher
from skiff_core.queue.sqs_copies import LeasedMessages

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_WAIT_S = 20  # ReceiveMessage WaitTimeSeconds upper bound
MAX_POLLERS = 4  # concurrent ReceiveMessage calls per endpoint while job-takes are parked
MAX_HOLD_S = 1.0  # longest a received message waits here for a taker before it is released
# With batching, `stats` reads the queues' counts at most this often and adjusts the last reading
# by this process's own sends, receives and deletes in between: the controller asks on every
# enqueue, and each reading is two GetQueueAttributes requests.
STATS_MAX_AGE_S = 1.0
MAX_VISIBILITY_S = 12 * 3600  # VisibilityTimeout upper bound
MAX_RETENTION_S = 14 * 24 * 3600  # MessageRetentionPeriod upper bound: keep jobs as long as SQS can
MAX_NAME_LEN = 80  # queue names: 1-80 alphanumerics, hyphens, underscores

# Receipts are "<lane>:<SentTimestamp ms>:<handle>": delete/extend need the queue the delivery came
# from, and extend needs the send time to stay under the 12 h total visibility SQS allows.
NORMAL, LOW, DEAD = "n", "l", "d"
_LANES = (NORMAL, LOW, DEAD)


def visibility_timeout(lease: float) -> int:
    """SQS wants whole seconds: round up so a lease is never shorter than asked, cap at 12 h."""
    if lease < 0:
        raise ValueError(f"lease must not be negative, got {lease}")
    return min(MAX_VISIBILITY_S, math.ceil(lease))


@dataclass
class _AgeTracker:
    """What this process can know about the age of an endpoint's oldest visible message.

    SQS exposes no such attribute (only the CloudWatch metric ApproximateAgeOfOldestMessage, a
    minute behind and absent from ElasticMQ/moto), and peeking would raise receive counts. So:
    messages this process enqueued are remembered with their send time and forgotten once this
    process receives them, purges them, or sees fewer visible messages than it remembers (the
    oldest are assumed taken: SQS standard queues are roughly FIFO). Messages enqueued by other
    processes are aged from when this process first saw the queue non-empty. The result is exact
    in one process and a "backlogged for at least" estimate across processes.
    """

    sent: dict[str, float] = field(default_factory=dict)  # job id -> send time, insertion-ordered
    nonempty_since: float | None = None

    def observe(self, queued: int, now: float) -> float:
        if queued <= 0:
            self.sent.clear()
            self.nonempty_since = None
            return 0.0
        if self.nonempty_since is None:
            self.nonempty_since = now
        excess = len(self.sent) - queued
        for job_id in list(self.sent)[: max(0, excess)]:
            del self.sent[job_id]
        oldest = min(self.sent.values(), default=self.nonempty_since)
        return max(0.0, now - min(oldest, self.nonempty_since))


@dataclass
class _Counts:
    """This process's own traffic on an endpoint's work queues, and the last counts SQS gave."""

    sent: int = 0
    received: int = 0
    deleted: int = 0
    returned: int = 0  # made visible again (extend to 0, a held message released)
    read_at: float = -math.inf  # monotonic
    queued: int = 0
    in_flight: int = 0
    base: tuple[int, int, int, int] = (0, 0, 0, 0)

    def snapshot(self) -> tuple[int, int, int, int]:
        return (self.sent, self.received, self.deleted, self.returned)


@dataclass
class _Taker:
    want: int
    deadline: float  # monotonic
    future: asyncio.Future[list[Delivery]]
    timer: asyncio.TimerHandle | None = None


@dataclass
class _Inbox:
    """One endpoint's parked job-takes and the messages received for them but not handed out."""

    takers: deque[_Taker] = field(default_factory=deque)
    held: deque[tuple[Delivery, float]] = field(default_factory=deque)  # (delivery, monotonic received)
    pollers: int = 0
    asked: int = 0  # messages asked for by receive calls in flight
    backlog: bool = False  # the last receive came back full: more pollers may help
    low_due: float = 0.0  # monotonic time by which the low queue is to be looked at again
    lease: float = 30.0
    release_timer: asyncio.TimerHandle | None = None

    def demand(self) -> int:
        return sum(t.want for t in self.takers if not t.future.done())


class SqsQueue:
    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "skiff-",
        *,
        max_connections: int = 128,
        low_check_interval_s: float = 2.0,
        batch_linger_s: float | None = 0.005,
    ) -> None:
        self._prefix = prefix
        self._batching = batch_linger_s is not None
        linger = self._linger_s = batch_linger_s or 0.0
        self._sends = Batcher(self._send_batch, linger)
        self._deletes = Batcher(
            self._delete_batch, linger, frozenset({"ReceiptHandleIsInvalid"}), dedupe="ReceiptHandle"
        )
        self._inboxes: dict[str, _Inbox] = {}
        self._counts: dict[str, _Counts] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._low_check_interval_s = max(1.0, low_check_interval_s)
        # Long polls hold a connection for up to 20 s: the read timeout must outlast them.
        self._api = SqsApi(endpoint_url, region, max_connections=max_connections, read_timeout_s=MAX_WAIT_S + 10)
        self._urls: dict[tuple[str, str], str] = {}
        self._max_receives: dict[str, int] = {}  # per ensured endpoint, to make vanished queues again
        self._recreating: dict[str, asyncio.Lock] = {}
        self._ages: dict[str, _AgeTracker] = {}
        self._leased = LeasedMessages()
        self._closed = False
        self._closing = False

    # Plumbing.

    def _name(self, endpoint: str, lane: str) -> str:
        suffix = {NORMAL: "", LOW: "-low", DEAD: "-dlq"}[lane]
        name = f"{self._prefix}{endpoint}{suffix}"
        if len(name) > MAX_NAME_LEN:
            raise ValueError(f"SQS queue name {name!r} is longer than {MAX_NAME_LEN} characters")
        return name

    async def _url(self, endpoint: str, lane: str) -> str:
        key = (endpoint, lane)
        url = self._urls.get(key)
        if url is None:
            # Another replica may have run `ensure`; look the queue up by name once and cache it.
            name = self._name(endpoint, lane)
            try:
                reply = await self._api.call("GetQueueUrl", {"QueueName": name})
            except ClientError as exc:
                if not _missing(exc):
                    raise
                await self._recreate(endpoint, None)
                return self._urls[key]
            url = self._urls[key] = reply["QueueUrl"]
        return url

    async def _on_queue(self, endpoint: str, lane: str, attempt: Callable[[str], Awaitable[T]]) -> T:
        """`attempt(url)`, once more after making the endpoint's queues again if the queue is gone."""
        url = await self._url(endpoint, lane)
        try:
            return await attempt(url)
        except ClientError as exc:
            if not _missing(exc):
                raise
        await self._recreate(endpoint, url)
        return await attempt(await self._url(endpoint, lane))

    async def _recreate(self, endpoint: str, stale_url: str | None) -> None:
        max_receives = self._max_receives.get(endpoint)
        if max_receives is None:
            name = self._name(endpoint, NORMAL)
            raise QueueMissing(f"SQS queue {name!r} does not exist; ensure({endpoint!r}) creates it")
        async with self._recreating.setdefault(endpoint, asyncio.Lock()):
            if stale_url is not None and stale_url not in self._urls.values():
                return  # a concurrent call made them again already
            for lane in _LANES:
                self._urls.pop((endpoint, lane), None)
            log.warning("the SQS queues of endpoint %r are gone; making them again", endpoint)
            await self.ensure(endpoint, max_receives=max_receives)

    async def _send_batch(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._api.call("SendMessageBatch", {"QueueUrl": url, "Entries": entries})

    async def _delete_batch(self, url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        return await self._api.call("DeleteMessageBatch", {"QueueUrl": url, "Entries": entries})

    def _count(self, endpoint: str) -> _Counts:
        counts = self._counts.get(endpoint)
        if counts is None:
            counts = self._counts[endpoint] = _Counts()
        return counts

    # The inbox: parked job-takes, the pollers that feed them, messages held for the next taker.

    def _start_pollers(self, endpoint: str, inbox: _Inbox) -> None:
        # One poller unless messages are backed up: parallel receives of a trickle would each
        # bring one message, a request per job.
        needed = min(MAX_POLLERS if inbox.backlog else 1, math.ceil(inbox.demand() / MAX_BATCH))
        while inbox.pollers < needed:
            inbox.pollers += 1
            self._spawn(self._poll(endpoint, inbox))

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll(self, endpoint: str, inbox: _Inbox) -> None:
        """Receive for the parked takers until none is left wanting more than other pollers ask."""
        try:
            while True:
                want = min(MAX_BATCH, inbox.demand() - inbox.asked)
                if want <= 0 or (inbox.pollers > 1 and not inbox.backlog):
                    return
                inbox.asked += want
                try:
                    got = await self._receive_for(endpoint, inbox, want)
                finally:
                    inbox.asked -= want
                inbox.backlog = len(got) >= MAX_BATCH
                self._hold(endpoint, inbox, got)
                if inbox.backlog:
                    self._start_pollers(endpoint, inbox)
                elif got and self._linger_s:
                    # A part batch: let the next messages gather for a linger before asking again.
                    await asyncio.sleep(self._linger_s)
        except Exception as exc:
            log_failure(log, exc, "receiving from the SQS queues of endpoint %s failed; retrying", endpoint)
            await asyncio.sleep(1.0)
        finally:
            inbox.pollers -= 1
            if not self._closing and inbox.demand() > 0:
                self._start_pollers(endpoint, inbox)

    async def _receive_for(self, endpoint: str, inbox: _Inbox, want: int) -> list[Delivery]:
        """One round for the inbox: the normal queue first, the low one when the normal one came
        back empty. A long poll of the normal queue answers as soon as a message is there, so it
        needs no quick look first while the low queue was looked at within `low_check_interval_s`:
        a trickle of normal work then costs a receive per batch, not three (a quick look at each
        queue, mostly empty, and the long poll)."""
        remaining = max((t.deadline for t in inbox.takers), default=0.0) - time.monotonic()
        # Whole seconds only; rounding up overshoots the takers' wait by under a second.
        slice_s = min(math.ceil(remaining), math.ceil(self._low_check_interval_s), MAX_WAIT_S) if remaining > 0 else 0
        low_due = time.monotonic() >= inbox.low_due
        got = await self._receive_lane(endpoint, NORMAL, want, inbox.lease, 0 if low_due else slice_s)
        if got:
            return got
        got = await self._receive_lane(endpoint, LOW, want, inbox.lease, 0)
        inbox.low_due = time.monotonic() + self._low_check_interval_s
        if got:
            return got
        if not slice_s:
            await asyncio.sleep(0)  # the takers' own timers answer them
            return []
        if not low_due:
            return []  # the normal queue was long-polled already
        return await self._receive_lane(endpoint, NORMAL, want, inbox.lease, slice_s)

    def _take_held(self, inbox: _Inbox, n: int) -> list[Delivery]:
        got: list[Delivery] = []
        while inbox.held and len(got) < n:
            got.append(inbox.held.popleft()[0])
        return got

    def _hold(self, endpoint: str, inbox: _Inbox, deliveries: list[Delivery]) -> None:
        """Give `deliveries` to parked takers in arrival order; keep the rest for the next taker."""
        pending = deque(deliveries)
        for taker in list(inbox.takers):
            if not pending:
                break
            if taker.future.done():
                continue
            _settle_taker(taker, [pending.popleft() for _ in range(min(taker.want, len(pending)))])
        if not pending:
            return
        now = time.monotonic()
        inbox.held.extend((d, now) for d in pending)
        if inbox.release_timer is None:
            inbox.release_timer = asyncio.get_running_loop().call_later(
                self._hold_s(inbox), lambda: self._spawn(self._release(endpoint, inbox))
            )

    @staticmethod
    def _hold_s(inbox: _Inbox) -> float:
        return min(MAX_HOLD_S, inbox.lease / 10)

    async def _release(self, endpoint: str, inbox: _Inbox, *, everything: bool = False) -> None:
        """Make held messages nobody took within the hold time visible again.

        Their receive count has gone up by one all the same (SQS counts receives, not hand-outs);
        pollers ask only for what parked takers want, so this happens only when takers leave.
        """
        if inbox.release_timer is not None:
            inbox.release_timer.cancel()
            inbox.release_timer = None
        cutoff = time.monotonic() - (0.0 if everything else self._hold_s(inbox))
        stale: dict[str, list[str]] = {}
        while inbox.held and (everything or inbox.held[0][1] <= cutoff):
            delivery = inbox.held.popleft()[0]
            lane, handle = _split_receipt(delivery.receipt)
            stale.setdefault(lane, []).append(self._leased.current(handle))
            self._leased.ended(handle)
        for lane, handles in stale.items():
            self._count(endpoint).returned += len(handles)
            url = await self._url(endpoint, lane)
            for start in range(0, len(handles), MAX_BATCH):
                chunk = handles[start : start + MAX_BATCH]
                try:
                    await self._api.call(
                        "ChangeMessageVisibilityBatch",
                        {
                            "QueueUrl": url,
                            "Entries": [
                                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)
                            ],
                        },
                    )
                except Exception as exc:
                    # They come back at the end of their lease instead.
                    log_failure(log, exc, "could not release %d held messages of endpoint %s", len(chunk), endpoint)
        if inbox.held and not self._closing:
            age = time.monotonic() - inbox.held[0][1]
            inbox.release_timer = asyncio.get_running_loop().call_later(
                max(0.0, self._hold_s(inbox) - age), lambda: self._spawn(self._release(endpoint, inbox))
            )

    # JobQueue.

    async def ensure(self, endpoint: str, *, max_receives: int) -> None:
        if not 1 <= max_receives <= 1000:
            raise ValueError(f"max_receives must be between 1 and 1000 (SQS maxReceiveCount), got {max_receives}")
        # Encrypted at rest with SQS-managed keys (the AWS default since 2022; stated so it holds
        # on older accounts too): https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html
        retention = {"MessageRetentionPeriod": str(MAX_RETENTION_S), "SqsManagedSseEnabled": "true"}
        self._max_receives[endpoint] = max_receives
        dead_url = await self._create_or_find(endpoint, DEAD, retention)
        attrs = await self._api.call("GetQueueAttributes", {"QueueUrl": dead_url, "AttributeNames": ["QueueArn"]})
        redrive = json.dumps({"deadLetterTargetArn": attrs["Attributes"]["QueueArn"], "maxReceiveCount": max_receives})
        for lane in (NORMAL, LOW):
            # Set the policy on found queues too: max_retries may have changed since they were made.
            await self._create_or_find(endpoint, lane, {**retention, "RedrivePolicy": redrive})

    async def _create_or_find(self, endpoint: str, lane: str, attributes: dict[str, str]) -> str:
        name = self._name(endpoint, lane)
        try:
            url = (await self._api.call("GetQueueUrl", {"QueueName": name}))["QueueUrl"]
        except ClientError as exc:
            if not _missing(exc):
                raise
            # CreateQueue is idempotent for equal attributes; a racing replica makes the same ones.
            url = (await self._api.call("CreateQueue", {"QueueName": name, "Attributes": attributes}))["QueueUrl"]
        else:
            # A found queue keeps the encryption it has: an operator may have chosen a KMS key,
            # which SQS refuses to combine with SqsManagedSseEnabled (and some SQS-compatible
            # servers do not know that attribute at all).
            kept = {k: v for k, v in attributes.items() if k != "SqsManagedSseEnabled"}
            await self._api.call("SetQueueAttributes", {"QueueUrl": url, "Attributes": kept})
        self._urls[(endpoint, lane)] = url
        return url

    async def enqueue(self, endpoint: str, job_id: str, *, low_priority: bool = False) -> None:
        lane = LOW if low_priority else NORMAL
        # Only the id travels: the job (and any big input, via the payload store) lives elsewhere,
        # so the 256 KiB / 1 MiB message size limit is never approached.
        body = json.dumps({"job_id": job_id})
        if self._batching:
            await self._on_queue(endpoint, lane, lambda url: self._sends.submit(url, {"MessageBody": body}))
        else:
            await self._on_queue(
                endpoint, lane, lambda url: self._api.call("SendMessage", {"QueueUrl": url, "MessageBody": body})
            )
        self._count(endpoint).sent += 1
        tracker = self._ages.setdefault(endpoint, _AgeTracker())
        tracker.sent[job_id] = time.time()

    async def receive(self, endpoint: str, *, max_messages: int, lease: float, wait: float) -> list[Delivery]:
        """Normal queue first; the low one only when the normal one came back empty.

        A busy normal queue costs one call. While both are empty the wait is spent long-polling the
        normal queue in slices of `low_check_interval_s`, with a short poll of the low queue between
        slices: normal work wakes the poll at once, low-priority work is seen within one slice.
        Polling both queues in parallel would be faster for low-priority work but could take
        low-priority messages while normal ones wait, and releasing them would raise their receive
        counts towards the dead-letter queue.
        """
        _check_receive(max_messages, lease)
        if not self._batching:
            return await self._receive_direct(endpoint, max_messages, lease, wait)
        inbox = self._inboxes.setdefault(endpoint, _Inbox())
        inbox.lease = lease
        held = self._take_held(inbox, max_messages)
        if held or wait <= 0:
            return held or await self._receive_direct(endpoint, max_messages, lease, 0)
        loop = asyncio.get_running_loop()
        taker = _Taker(max_messages, time.monotonic() + wait, loop.create_future())
        taker.timer = loop.call_later(wait, _settle_taker, taker, [])
        inbox.takers.append(taker)
        self._start_pollers(endpoint, inbox)
        try:
            return await taker.future
        except asyncio.CancelledError:
            # The job-take went away: what it was just given goes to the next taker.
            if taker.future.done() and not taker.future.cancelled():
                self._hold(endpoint, inbox, taker.future.result())
            raise
        finally:
            taker.timer.cancel()
            if taker in inbox.takers:
                inbox.takers.remove(taker)

    async def _receive_direct(self, endpoint: str, max_messages: int, lease: float, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + max(0.0, wait)
        got = await self._receive_lane(endpoint, NORMAL, max_messages, lease, 0)
        while True:
            if got:
                return got
            got = await self._receive_lane(endpoint, LOW, max_messages, lease, 0)
            if got:
                return got
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            # Whole seconds only; rounding up overshoots the caller's wait by under a second.
            slice_s = min(math.ceil(remaining), math.ceil(self._low_check_interval_s), MAX_WAIT_S)
            got = await self._receive_lane(endpoint, NORMAL, max_messages, lease, slice_s)

    async def _receive_lane(
        self, endpoint: str, lane: str, max_messages: int, lease: float, wait_s: int
    ) -> list[Delivery]:
        return await self._on_queue(
            endpoint, lane, lambda url: self._receive_from(url, endpoint, lane, max_messages, lease, wait_s)
        )

    async def _receive_from(
        self, url: str, endpoint: str, lane: str, max_messages: int, lease: float, wait_s: int
    ) -> list[Delivery]:
        # Taken before the call: SQS starts the lease later, so the one recorded never outlasts it.
        lease_end = time.monotonic() + lease
        future = asyncio.ensure_future(
            self._api.call(
                "ReceiveMessage",
                {
                    "QueueUrl": url,
                    "MaxNumberOfMessages": min(max_messages, MAX_BATCH),
                    "VisibilityTimeout": visibility_timeout(lease),
                    "WaitTimeSeconds": wait_s,
                    "MessageSystemAttributeNames": ["ApproximateReceiveCount", "SentTimestamp"],
                },
            )
        )
        try:
            # Cancelling a receive that SQS may already have answered would lose its messages to
            # their lease: shield the call so cancelling the caller (a client gone from job-take)
            # leaves it running, and hand back what it receives later.
            reply = await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(lambda f: self._release_late(url, f))
            raise
        deliveries = []
        for message in reply.get("Messages", []):
            delivery = _delivery(lane, message)
            if delivery is None:
                log.warning("dropping a message that is not a Skiff job from %s: %r", url, message.get("Body"))
                await self._api.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"]})
                continue
            handle = message["ReceiptHandle"]
            if lane != DEAD and not self._leased.received(message.get("MessageId"), handle, lease_end):
                log.info(
                    "SQS delivered job %s again while it is out on lease; the copy is not handed out", delivery.job_id
                )
                continue
            deliveries.append(delivery)
        if lane != DEAD and deliveries:
            self._count(endpoint).received += len(deliveries)
            sent = self._ages.setdefault(endpoint, _AgeTracker()).sent
            for delivery in deliveries:
                sent.pop(delivery.job_id, None)
        return deliveries

    def _release_late(self, url: str, future: asyncio.Future[Any]) -> None:
        if future.cancelled() or future.exception() is not None or self._closing:
            return
        for message in future.result().get("Messages", []):
            self._spawn(
                self._api.call(
                    "ChangeMessageVisibility",
                    {"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0},
                )
            )

    async def delete(self, endpoint: str, receipt: str) -> None:
        lane, handle = _split_receipt(receipt)
        await self._delete(endpoint, lane, self._leased.current(handle))
        self._leased.ended(handle)
        self._count(endpoint).deleted += 1

    async def _delete(self, endpoint: str, lane: str, handle: str) -> None:
        if self._batching:
            await self._on_queue(endpoint, lane, lambda url: self._deletes.submit(url, {"ReceiptHandle": handle}))
            return
        try:
            await self._on_queue(
                endpoint, lane, lambda url: self._api.call("DeleteMessage", {"QueueUrl": url, "ReceiptHandle": handle})
            )
        except ClientError as exc:
            # The lease was lost and the message re-delivered (or already deleted): nothing to do.
            if _code(exc) != "ReceiptHandleIsInvalid":
                raise

    async def extend(self, endpoint: str, receipt: str, lease: float) -> None:
        lane, handle = _split_receipt(receipt)
        # ChangeMessageVisibility refuses a total beyond 12 h; moto counts it from the send, AWS
        # from the receive (never earlier), so capping from the send time satisfies both.
        left = MAX_VISIBILITY_S - (time.time() - _sent_at(receipt))
        timeout = max(0, min(visibility_timeout(lease), math.floor(left)))
        lease_end = time.monotonic() + min(lease, timeout)
        current = self._leased.current(handle)
        try:
            await self._on_queue(
                endpoint,
                lane,
                lambda url: self._api.call(
                    "ChangeMessageVisibility",
                    {"QueueUrl": url, "ReceiptHandle": current, "VisibilityTimeout": timeout},
                ),
            )
            if lease <= 0 and lane != DEAD:
                self._count(endpoint).returned += 1
            if timeout <= 0:
                self._leased.ended(handle)
            else:
                self._leased.extended(handle, lease_end)
        except ClientError as exc:
            # A stale receipt: the delivery is gone, there is no lease left to extend.
            if _code(exc) not in {"ReceiptHandleIsInvalid", "MessageNotInflight"}:
                raise

    async def stats(self, endpoint: str) -> QueueStats:
        counts = self._count(endpoint)
        if not self._batching or time.monotonic() - counts.read_at >= STATS_MAX_AGE_S:
            base = counts.snapshot()
            names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            queued = in_flight = 0
            for lane in (NORMAL, LOW):
                reply = await self._on_queue(
                    endpoint,
                    lane,
                    lambda url: self._api.call("GetQueueAttributes", {"QueueUrl": url, "AttributeNames": names}),
                )
                attrs = reply["Attributes"]
                queued += int(attrs.get("ApproximateNumberOfMessages", 0))
                in_flight += int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))
            counts.queued, counts.in_flight, counts.base, counts.read_at = queued, in_flight, base, time.monotonic()
        else:
            sent, received, deleted, returned = (a - b for a, b in zip(counts.snapshot(), counts.base, strict=True))
            queued = max(0, counts.queued + sent + returned - received)
            in_flight = max(0, counts.in_flight + received - deleted - returned)
        age = self._ages.setdefault(endpoint, _AgeTracker()).observe(queued, time.time())
        return QueueStats(queued=queued, in_flight=in_flight, oldest_age_s=age)

    async def purge(self, endpoint: str) -> list[str]:
        # Not PurgeQueue: it may run once per 60 s per queue and does not say which jobs it dropped.
        # Receiving takes only visible messages, so in-flight work is left alone as the contract asks.
        job_ids: list[str] = []
        inbox = self._inboxes.get(endpoint)
        if inbox is not None:
            # Received but not handed out: still queued as far as clients can tell.
            for delivery in self._take_held(inbox, len(inbox.held)):
                await self.delete(endpoint, delivery.receipt)
                job_ids.append(delivery.job_id)
        for lane in (NORMAL, LOW):
            url = await self._url(endpoint, lane)
            while True:
                batch = await self._receive_lane(endpoint, lane, MAX_BATCH, 60.0, 0)
                if not batch:
                    break
                await self._api.call(
                    "DeleteMessageBatch",
                    {
                        "QueueUrl": url,
                        "Entries": [
                            {"Id": str(i), "ReceiptHandle": _split_receipt(d.receipt)[1]} for i, d in enumerate(batch)
                        ],
                    },
                )
                self._count(endpoint).deleted += len(batch)
                job_ids.extend(d.job_id for d in batch)
        tracker = self._ages.get(endpoint)
        if tracker is not None:
            for job_id in job_ids:
                tracker.sent.pop(job_id, None)
        return job_ids

    async def receive_dead(self, endpoint: str, *, max_messages: int, lease: float) -> list[Delivery]:
        _check_receive(max_messages, lease)
        return await self._receive_lane(endpoint, DEAD, max_messages, lease, 0)

    async def delete_dead(self, endpoint: str, receipt: str) -> None:
        lane, handle = _split_receipt(receipt)
        if lane != DEAD:
            raise ValueError(f"not a dead-letter receipt: {receipt!r}")
        await self._delete(endpoint, DEAD, handle)

    async def close(self) -> None:
        if self._closed or self._closing:
            return
        self._closing = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for endpoint, inbox in self._inboxes.items():
            for taker in inbox.takers:
                _settle_taker(taker, [])
            await self._release(endpoint, inbox, everything=True)
        await self._sends.drain()
        await self._deletes.drain()
        self._closed = True
        await self._api.close()


def _settle_taker(taker: _Taker, deliveries: list[Delivery]) -> None:
    if not taker.future.done():
        taker.future.set_result(deliveries)
    if taker.timer is not None:
        taker.timer.cancel()


def _check_receive(max_messages: int, lease: float) -> None:
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages}")
    if lease < 0:
        raise ValueError(f"lease must not be negative, got {lease}")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _missing(exc: ClientError) -> bool:
    return _code(exc) in {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}


def _parse_receipt(receipt: str) -> tuple[str, int, str]:
    parts = receipt.split(":", 2)
    if len(parts) != 3 or parts[0] not in _LANES or not parts[1].isdigit() or not parts[2]:
        raise ValueError(f"not a receipt of this queue: {receipt!r}")
    return parts[0], int(parts[1]), parts[2]


def _split_receipt(receipt: str) -> tuple[str, str]:
    lane, _, handle = _parse_receipt(receipt)
    return lane, handle


def _sent_at(receipt: str) -> float:
    return _parse_receipt(receipt)[1] / 1000.0


def _delivery(lane: str, message: dict[str, Any]) -> Delivery | None:
    try:
        body = json.loads(message["Body"])
        job_id = body["job_id"]
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(job_id, str):
        return None
    attrs = message.get("Attributes", {})
    sent_ms = int(attrs.get("SentTimestamp", time.time() * 1000))
    return Delivery(
        job_id=job_id,
        receipt=f"{lane}:{sent_ms}:{message['ReceiptHandle']}",
        receive_count=int(attrs.get("ApproximateReceiveCount", 1)),
        enqueued_at=sent_ms / 1000.0,
    )
