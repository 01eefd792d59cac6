"""Webhooks: POST the final job status to the URL the client gave, retried with backoff.

Runpod retries a failed webhook twice with a delay; we retry `attempts` times with exponential
backoff (1 s, 2 s, 4 s, ...) and give up quietly after that, logging the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

log = logging.getLogger("skiff.webhooks")


class WebhookSender:
    def __init__(
        self,
        attempts: int = 5,
        first_delay: float = 1.0,
        timeout: float = 10.0,
        on_result: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_result(endpoint, result)`: each attempt's outcome (delivered, retried, failed)."""
        self._on_result = on_result
        self._attempts = attempts
        self._first_delay = first_delay
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, body: dict[str, Any], endpoint: str = "") -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(url, body, endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tell(self, endpoint: str, result: str) -> None:
        if self._on_result is not None:
            self._on_result(endpoint, result)

    async def _deliver(self, url: str, body: dict[str, Any], endpoint: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        delay = self._first_delay
        for attempt in range(1, self._attempts + 1):
            try:
                response = await self._client.post(url, json=body)
                if response.status_code < 300:
                    self._tell(endpoint, "delivered")
                    return
                reason = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self._attempts:
                self._tell(endpoint, "retried")
                log.warning(
                    "webhook for job %s to %s failed (%s); retrying in %.0fs",
                    body.get("id"),
                    url,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
            else:
                self._tell(endpoint, "failed")
                log.error(
                    "webhook for job %s to %s failed %d times (%s); giving up",
                    body.get("id"),
                    url,
                    attempt,
                    reason,
                )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
