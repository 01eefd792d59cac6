"""The one way tests wait for something: poll a condition until a deadline, then fail saying what
was awaited (and whatever context helps: a process's log, the last answer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

FINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


def eventually(
    cond: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05, context: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context()}".rstrip())


async def eventually_async(cond: Callable[[], Any], *, timeout: float = 5.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def wait_status(
    client: httpx.Client, endpoint: str, job_id: str, statuses: set[str] | frozenset[str], timeout: float = 30
) -> dict[str, Any]:
    """Poll `/status` until the job is in one of `statuses`; its last body."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v2/{endpoint}/status/{job_id}").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {sorted(statuses)} in {timeout}s: last {body}")


def wait_final(client: httpx.Client, endpoint: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    return wait_status(client, endpoint, job_id, FINAL, timeout)
