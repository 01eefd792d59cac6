"""SqsQueue behaviour beyond the shared contract, against moto's real SQS server process."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import boto3
import pytest

from skiff_core.outages import QueueMissing
from skiff_core.queue.sqs import STATS_MAX_AGE_S, SqsQueue, visibility_timeout
from tests.support.services import MotoServer


@pytest.fixture
def prefix() -> str:
    return f"s{uuid.uuid4().hex[:8]}-"


@pytest.fixture
async def queue(moto: MotoServer, prefix: str) -> AsyncIterator[SqsQueue]:
    q = SqsQueue(moto.url, "us-east-1", prefix, low_check_interval_s=1.0)
    await q.ensure("ep", max_receives=3)
    yield q
    await q.close()


def _sqs(moto: MotoServer) -> Any:
    return boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")


def test_visibility_timeout_rounds_up_and_caps() -> None:
    assert [visibility_timeout(x) for x in (0, 0.2, 1, 1.01, 10**9)] == [0, 1, 1, 2, 43200]
    with pytest.raises(ValueError):
        visibility_timeout(-1)


async def test_ensure_makes_three_queues_with_redrive(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    sqs = _sqs(moto)
    dlq_url = sqs.get_queue_url(QueueName=f"{prefix}ep-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for name in (f"{prefix}ep", f"{prefix}ep-low"):
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
        assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3}
    # Found by name later (another replica, or a changed max_retries): the policy follows.
    await queue.ensure("ep", max_receives=7)
    url = sqs.get_queue_url(QueueName=f"{prefix}ep")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 7


async def test_other_instances_find_queues_by_name(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    other = SqsQueue(moto.url, "us-east-1", prefix)
    try:
        await other.enqueue("ep", "from-other-replica")
        (got,) = await queue.receive("ep", max_messages=1, lease=30, wait=5)
        assert got.job_id == "from-other-replica"
        with pytest.raises(LookupError, match="ensure"):
            await other.enqueue("never-ensured", "x")
    finally:
        await other.close()


async def test_message_body_carries_only_the_job_id(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    await queue.enqueue("ep", "job-1")
    sqs = _sqs(moto)
    url = sqs.get_queue_url(QueueName=f"{prefix}ep")["QueueUrl"]
    (message,) = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"]
    assert json.loads(message["Body"]) == {"job_id": "job-1"}


async def test_fractional_lease_is_never_shorter(queue: SqsQueue) -> None:
    await queue.enqueue("ep", "job-1")
    (_first,) = await queue.receive("ep", max_messages=1, lease=0.2, wait=0)
    await asyncio.sleep(0.5)  # past the asked 0.2 s but inside the whole second SQS got
    assert await queue.receive("ep", max_messages=1, lease=30, wait=0) == []
    (again,) = await queue.receive("ep", max_messages=1, lease=30, wait=3)
    assert (again.job_id, again.receive_count) == ("job-1", 2)


async def test_long_lease_is_capped_not_refused(queue: SqsQueue) -> None:
    await queue.enqueue("ep", "job-1")
    (got,) = await queue.receive("ep", max_messages=1, lease=10**7, wait=0)
    await queue.extend("ep", got.receipt, 10**7)
    assert (await queue.stats("ep")).in_flight == 1


async def test_low_priority_work_found_during_a_long_poll(queue: SqsQueue) -> None:
    async def later() -> None:
        await asyncio.sleep(0.3)
        await queue.enqueue("ep", "low-1", low_priority=True)

    task = asyncio.create_task(later())
    got = await queue.receive("ep", max_messages=1, lease=30, wait=10)
    await task
    assert [d.job_id for d in got] == ["low-1"]
    assert got[0].receipt.startswith("l:")


async def test_cancelled_receive_hands_back_what_it_got_late(queue: SqsQueue) -> None:
    waiting = asyncio.create_task(queue.receive("ep", max_messages=1, lease=600, wait=10))
    await asyncio.sleep(0.3)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The abandoned long poll (still running in its thread) takes this message with a 600 s lease;
    # without the hand-back it would stay hidden for ten minutes.
    await queue.enqueue("ep", "job-1")
    got = await queue.receive("ep", max_messages=1, lease=30, wait=10)
    assert [d.job_id for d in got] == ["job-1"]


async def test_malformed_and_unknown_receipts(queue: SqsQueue) -> None:
    await queue.delete("ep", "n:0:not-a-real-handle")  # SQS says ReceiptHandleIsInvalid: ignored
    with pytest.raises(ValueError, match="not a receipt"):
        await queue.delete("ep", "garbage")
    with pytest.raises(ValueError, match="dead-letter"):
        await queue.delete_dead("ep", "n:0:handle")


async def test_foreign_messages_are_dropped(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    sqs = _sqs(moto)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}ep")["QueueUrl"], MessageBody="hello")
    await queue.enqueue("ep", "job-1")
    got = await queue.receive("ep", max_messages=10, lease=30, wait=0)
    assert [d.job_id for d in got] == ["job-1"]
    assert (await queue.stats("ep")).queued == 0


async def test_oldest_age_seen_from_another_process(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    controller = SqsQueue(moto.url, "us-east-1", prefix)  # knows nothing of the enqueues
    try:
        await queue.enqueue("ep", "job-1")
        first = await controller.stats("ep")
        await asyncio.sleep(1.1)
        later = await controller.stats("ep")
        assert first.queued == later.queued == 1
        assert later.oldest_age_s >= 1.0 > first.oldest_age_s
        await queue.purge("ep")
        # Another process's changes show once this one reads SQS's counts again (with batching,
        # at most STATS_MAX_AGE_S after the last reading).
        await asyncio.sleep(STATS_MAX_AGE_S)
        assert (await controller.stats("ep")).oldest_age_s == 0.0
    finally:
        await controller.close()


async def test_bad_arguments(queue: SqsQueue) -> None:
    with pytest.raises(ValueError, match="max_receives"):
        await queue.ensure("ep", max_receives=0)
    with pytest.raises(ValueError, match="max_messages"):
        await queue.receive("ep", max_messages=0, lease=1, wait=0)
    with pytest.raises(ValueError, match="longer than 80"):
        await queue.ensure("e" * 80, max_receives=1)


async def test_vanished_queues_are_made_again_by_the_next_call(queue: SqsQueue, moto: MotoServer, prefix: str) -> None:
    sqs = _sqs(moto)
    await queue.enqueue("ep", "before")  # the queue URLs are cached now
    for name in (f"{prefix}ep", f"{prefix}ep-low", f"{prefix}ep-dlq"):
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
    # moto deletes at once (AWS may take up to 60 s); the next call finds the queue gone.
    await queue.enqueue("ep", "after")
    (got,) = await queue.receive("ep", max_messages=1, lease=30, wait=5)
    assert got.job_id == "after"
    url = sqs.get_queue_url(QueueName=f"{prefix}ep")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(attrs["RedrivePolicy"])["maxReceiveCount"] == 3  # as the last ensure set it
    assert (await queue.stats("ep")).in_flight == 1


async def test_a_queue_never_ensured_is_named_missing(moto: MotoServer, prefix: str) -> None:
    other = SqsQueue(moto.url, "us-east-1", prefix)
    try:
        with pytest.raises(QueueMissing, match=f"{prefix}nowhere"):
            await other.enqueue("nowhere", "x")
    finally:
        await other.close()


async def test_a_batch_entry_failure_reaches_only_its_caller(moto: MotoServer, prefix: str) -> None:
    from botocore.exceptions import ClientError

    from skiff_core.queue.sqs_batch import BatchEntryError, Batcher

    sqs = _sqs(moto)
    url = sqs.create_queue(QueueName=f"{prefix}batch")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="m")
    (message,) = sqs.receive_message(QueueUrl=url, VisibilityTimeout=30)["Messages"]

    async def change_visibility(queue_url: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
        reply: dict[str, Any] = await asyncio.to_thread(
            sqs.change_message_visibility_batch, QueueUrl=queue_url, Entries=entries
        )
        return reply

    batcher = Batcher(change_visibility, linger_s=0.05)
    good = {"ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
    bad = {"ReceiptHandle": "not-a-receipt", "VisibilityTimeout": 0}
    outcomes = await asyncio.gather(batcher.submit(url, good), batcher.submit(url, bad), return_exceptions=True)
    assert outcomes[0] is None
    assert isinstance(outcomes[1], BatchEntryError) and outcomes[1].code == "ReceiptHandleIsInvalid"
    # The good entry did take effect: the message is visible again.
    assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"][0]["Body"] == "m"
    # A failure of the whole request (no such queue) reaches every caller of the batch.
    gone = url + "-missing"
    outcomes = await asyncio.gather(batcher.submit(gone, good), batcher.submit(gone, bad), return_exceptions=True)
    assert all(isinstance(o, ClientError) for o in outcomes), outcomes


async def test_a_full_batch_goes_out_without_waiting_for_the_linger(moto: MotoServer, prefix: str) -> None:
    queue = SqsQueue(moto.url, "us-east-1", prefix, batch_linger_s=30.0)
    try:
        await queue.ensure("ep", max_receives=3)
        # Ten sends fill a batch: it goes out at once, not after the 30 s linger.
        await asyncio.wait_for(asyncio.gather(*(queue.enqueue("ep", f"job-{i}") for i in range(10))), 20)
    finally:
        await queue.close()
    queue = SqsQueue(moto.url, "us-east-1", prefix, batch_linger_s=0.05)
    try:
        await asyncio.wait_for(queue.enqueue("ep", "lone"), 20)
        got = await queue.receive("ep", max_messages=10, lease=30, wait=2)
        got += await queue.receive("ep", max_messages=10, lease=30, wait=2)
        assert "lone" in {d.job_id for d in got}
    finally:
        await queue.close()


async def test_a_copy_delivered_while_a_lease_runs_is_not_handed_out(
    queue: SqsQueue, moto: MotoServer, prefix: str
) -> None:
    """SQS delivers at least once (and moto hands one message to two concurrent receives): a copy
    received while an earlier delivery's lease runs must not reach a second worker, and the
    holder's later calls, made with its own receipt, must still act on the message (SQS heeds only
    the newest receipt handle)."""
    sqs = _sqs(moto)
    await queue.ensure("dup", max_receives=10)  # each copy counts as a receive too
    url = sqs.get_queue_url(QueueName=f"{prefix}dup")["QueueUrl"]
    await queue.enqueue("dup", "job-a")
    (first,) = await queue.receive("dup", max_messages=1, lease=30, wait=2)
    handle = first.receipt.split(":", 2)[2]
    # What a duplicate delivery looks like from here: the message visible again mid-lease.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    assert await queue.receive("dup", max_messages=1, lease=30, wait=1) == []
    # The holder re-queues it with its own receipt (a worker gone silent): handed out again.
    await queue.extend("dup", first.receipt, 0)
    (again,) = await queue.receive("dup", max_messages=1, lease=1, wait=2)
    assert again.job_id == "job-a" and again.receive_count > first.receive_count
    # A lease that runs out ends as well: the redelivery after it is no copy.
    await asyncio.sleep(1.5)
    (third,) = await queue.receive("dup", max_messages=1, lease=30, wait=3)
    assert third.job_id == "job-a"
    # A copy again, then the holder's delete with its own receipt removes the message.
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=third.receipt.split(":", 2)[2], VisibilityTimeout=0)
    assert await queue.receive("dup", max_messages=1, lease=1, wait=1) == []
    await queue.delete("dup", third.receipt)
    await asyncio.sleep(1.5)  # past the copy's own lease
    assert await queue.receive("dup", max_messages=1, lease=30, wait=1) == []


async def test_a_trickle_of_normal_work_looks_at_the_low_queue_once_an_interval(queue: SqsQueue) -> None:
    # One job every 50 ms for 1.5 s, taken by a job-take parked each time: every receive finds at
    # most a message or two, and the low queue (interval 1 s here) is looked at a few times, not
    # once for every empty look at the normal queue.
    receives: list[str] = []
    call = queue._api.call

    async def counting(action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action == "ReceiveMessage":
            receives.append("low" if params["QueueUrl"].endswith("-low") else "normal")
        return await call(action, params)

    queue._api.call = counting  # type: ignore[method-assign]
    jobs = [f"trickle-{i}" for i in range(30)]

    async def produce() -> None:
        for job_id in jobs:
            await queue.enqueue("ep", job_id)
            await asyncio.sleep(0.05)

    producing = asyncio.create_task(produce())
    taken: list[str] = []
    while len(taken) < len(jobs):
        got = await queue.receive("ep", max_messages=1, lease=30, wait=5)
        for delivery in got:
            taken.append(delivery.job_id)
            await queue.delete("ep", delivery.receipt)
    await producing
    assert sorted(taken) == sorted(jobs)
    assert receives.count("low") <= 4, receives
    assert receives.count("normal") <= len(jobs) + 2, receives
