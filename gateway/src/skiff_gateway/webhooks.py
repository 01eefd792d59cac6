"""Webhooks: POST the final job status to the URL the client gave, retried with backoff.

A URL is checked when the job is submitted (`webhook_problem`): http or https, a host, a valid
port, no whitespace or control characters, and one httpx can send to. Runpod retries a failed
webhook twice with a delay; we retry `attempts` times with exponential backoff (1 s, 2 s, 4 s, ...)
and then give up with an error line in the log and a count per endpoint (`given_up`, shown in
the endpoint's /health as `webhooks.givenUp`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("skiff.webhooks")

MAX_URL_LENGTH = 2048


def webhook_problem(url: object) -> str | None:
    """Why `url` cannot be a webhook, or None when it can."""
    if not isinstance(url, str):
        return "webhook must be a string URL"
    if len(url) > MAX_URL_LENGTH:
        return f"webhook URL is longer than {MAX_URL_LENGTH} characters"
    if any(ch <= " " or ch == "\x7f" for ch in url):
        return "webhook URL must not contain spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0-65535
    except ValueError as exc:
        return f"webhook is not a valid URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return "webhook must be an http:// or https:// URL"
    if not parts.hostname:
        return "webhook URL must name a host"
    if port == 0:
        return "webhook URL port must be between 1 and 65535"
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"webhook is not a valid URL: {exc}"
    return None


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
        self.given_up: Counter[str] = Counter()  # endpoint -> webhooks abandoned after every attempt

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
            except Exception as exc:
                # Any failure (not only httpx's: a URL it cannot send to raises others) is retried.
                reason = f"{type(exc).__name__}: {exc}"
            if attempt < self._attempts:
                self._tell(endpoint, "retried")
                log.warning(
                    "webhook for job %s to %s failed (%s); retrying in %.0fs", body.get("id"), url, reason, delay
                )
                await asyncio.sleep(delay)
                delay *= 2
        self._tell(endpoint, "failed")
        self.given_up[endpoint] += 1
        log.error(
            "webhook for job %s to %s failed %d times (%s); giving up", body.get("id"), url, self._attempts, reason
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
