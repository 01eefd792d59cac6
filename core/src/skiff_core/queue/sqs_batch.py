"""Coalescing of single SQS calls into their batch forms (SendMessageBatch, DeleteMessageBatch,
ChangeMessageVisibilityBatch): SQS bills per request, and each request costs a round trip and
boto3's per-call CPU.

Callers submit one entry each and wait for their own entry's outcome: a batch goes out when it
holds MAX_BATCH entries or `linger_s` after its first entry, whichever comes first, so a lone
entry waits at most the linger. Each entry's success or failure is read from the batch reply's
Successful/Failed lists and reaches only its own caller; a failure of the whole call reaches every
caller of that batch. Entries that failed on the service's side (SenderFault false) are retried
in a later batch a few times, as botocore retries a failed single call.

AWS API reference (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/):
API_SendMessageBatch.html, API_DeleteMessageBatch.html, API_ChangeMessageVisibilityBatch.html,
API_BatchResultErrorEntry.html (Id, Code, Message, SenderFault).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

MAX_BATCH = 10  # entries per batch request, for all three batch actions
RETRIES = 2  # further attempts for an entry that failed on the service's side


class BatchEntryError(Exception):
    """One entry of a batch request was refused; `code` is SQS's error code for it."""

    def __init__(self, code: str, message: str, sender_fault: bool) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.sender_fault = code, sender_fault


@dataclass
class _Entry:
    params: dict[str, Any]
    future: asyncio.Future[None]
    attempts: int = 0


@dataclass
class _Pending:
    entries: list[_Entry] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


BatchCall = Callable[[str, list[dict[str, Any]]], Awaitable[dict[str, Any]]]


class Batcher:
    """Entries for one batch action, grouped per queue URL.

    `call(url, entries)` performs the batch request (entries carry their "Id"); `ignored` are
    per-entry error codes that count as success (a stale receipt on delete); entries equal in
    their `dedupe` parameter go out once and share the outcome (SQS refuses a batch that names
    one receipt handle twice).
    """

    def __init__(
        self, call: BatchCall, linger_s: float, ignored: frozenset[str] = frozenset(), dedupe: str | None = None
    ) -> None:
        self._call, self._linger_s, self._ignored, self._dedupe = call, max(0.0, linger_s), ignored, dedupe
        self._pending: dict[str, _Pending] = {}
        self._flights: set[asyncio.Task[None]] = set()

    async def submit(self, url: str, params: dict[str, Any]) -> None:
        """Queue one entry and return once the service has accepted it (or raise its error)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Retrieved even when its caller has gone away, so asyncio does not log it as unhandled.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._add(url, _Entry(params, future))
        # Shielded: a caller that goes away does not take its entry out of a batch being sent.
        await asyncio.shield(future)

    def _add(self, url: str, entry: _Entry) -> None:
        pending = self._pending.setdefault(url, _Pending())
        pending.entries.append(entry)
        if len(pending.entries) >= MAX_BATCH:
            self._flush(url)
        elif pending.timer is None:
            pending.timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush, url)

    def _flush(self, url: str) -> None:
        pending = self._pending.pop(url, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._send(url, pending.entries))
        self._flights.add(task)
        task.add_done_callback(self._flights.discard)

    async def _send(self, url: str, batch: list[_Entry]) -> None:
        entries: list[_Entry] = []
        if self._dedupe is None:
            entries = batch
        else:
            first: dict[Any, _Entry] = {}
            for entry in batch:
                key = entry.params.get(self._dedupe)
                if key in first:
                    _follow(first[key].future, entry.future)
                else:
                    first[key] = entry
                    entries.append(entry)
        try:
            reply = await self._call(url, [{**e.params, "Id": str(i)} for i, e in enumerate(entries)])
        except BaseException as exc:
            for entry in entries:
                _settle(entry.future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        answered: set[int] = set()
        for ok in reply.get("Successful", []):
            answered.add(int(ok["Id"]))
            _settle(entries[int(ok["Id"])].future, None)
        for bad in reply.get("Failed", []):
            answered.add(int(bad["Id"]))
            entry = entries[int(bad["Id"])]
            code, sender_fault = str(bad.get("Code", "")), bool(bad.get("SenderFault", True))
            if code in self._ignored:
                _settle(entry.future, None)
            elif not sender_fault and entry.attempts < RETRIES:
                entry.attempts += 1
                self._add(url, entry)
            else:
                _settle(entry.future, BatchEntryError(code, str(bad.get("Message", "")), sender_fault))
        for i, entry in enumerate(entries):
            if i not in answered:
                _settle(entry.future, BatchEntryError("NoResult", "the batch reply did not mention this entry", False))

    async def drain(self) -> None:
        """Send everything pending now and wait for every batch in flight."""
        for url in list(self._pending):
            self._flush(url)
        while self._flights:
            await asyncio.gather(*list(self._flights), return_exceptions=True)


def _follow(leader: asyncio.Future[None], follower: asyncio.Future[None]) -> None:
    def copy(done: asyncio.Future[None]) -> None:
        _settle(follower, None if done.cancelled() else done.exception())

    leader.add_done_callback(copy)


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)
