"""The payload seam: inputs and outputs too big to carry inline in the queue and the job store.

A stored value is replaced in the job record by `{"$skiff_payload": ref}`; the ref is opaque to
everyone but the store that made it. Payloads live as long as their job: `expires_at` is the
job's retention horizon, used by the store's own expiry mechanism as a safety net, while the
controller's `delete(job_id)` when it drops the job removes them at once.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, runtime_checkable

import orjson

PAYLOAD_KEY = "$skiff_payload"
PayloadKind = Literal["input", "output"]
KINDS: tuple[PayloadKind, ...] = ("input", "output")


class PayloadMissing(LookupError):
    """The ref names no stored payload (expired, deleted, or never written)."""


@runtime_checkable
class PayloadStore(Protocol):
    async def put(self, job_id: str, kind: PayloadKind, data: bytes, expires_at: float) -> str:
        """Store `data` durably and return its ref. Writing the same job and kind again replaces it."""

    async def get(self, ref: str) -> bytes:
        """The stored bytes; raises PayloadMissing when there are none, ValueError for a foreign ref."""

    async def delete(self, job_id: str) -> None:
        """Remove the job's payloads (all kinds); no error when there are none."""

    async def sweep(self, now: float | None = None) -> int:
        """Remove payloads past their expiry that no `delete` reached (a gateway died between
        dropping a record and its payloads); returns how many. 0 where the backend expires
        objects itself."""

    async def close(self) -> None: ...


def should_inline(size: int, inline_max_bytes: int) -> bool:
    """Whether a JSON body of `size` bytes stays in the record (strictly below the limit)."""
    return size < inline_max_bytes


def stays_inline(value: Any, data: bytes, inline_max_bytes: int) -> bool:
    """Whether `value` (whose JSON is `data`) stays in the record rather than the payload store.
    A small value that merely looks like a reference is stored too, so reading stays unambiguous."""
    return should_inline(len(data), inline_max_bytes) and payload_ref(value) is None


def payload_ref(value: Any) -> str | None:
    """The ref when `value` is a payload reference, else None."""
    if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(PAYLOAD_KEY), str):
        return str(value[PAYLOAD_KEY])
    return None


async def reference(
    store: PayloadStore,
    job_id: str,
    kind: PayloadKind,
    value: Any,
    *,
    inline_max_bytes: int,
    expires_at: float,
    encoded: bytes | None = None,
) -> Any:
    """`value` itself when its JSON is small, else stored and replaced by a reference.

    Pass `encoded` when the caller already holds the JSON bytes (e.g. the request body) to skip
    encoding again.
    """
    data = encoded if encoded is not None else orjson.dumps(value)
    if stays_inline(value, data, inline_max_bytes):
        return value
    return {PAYLOAD_KEY: await store.put(job_id, kind, data, expires_at)}


async def dereference(store: PayloadStore, value: Any) -> Any:
    """The stored JSON value behind a reference; any other value unchanged."""
    ref = payload_ref(value)
    if ref is None:
        return value
    return orjson.loads(await store.get(ref))
