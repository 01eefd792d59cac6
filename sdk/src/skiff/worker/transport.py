"""HTTP to the gateway: headers, errors, backoff, and the two clients that send requests.

The job loop talks through one aiohttp session (`GatewayHttp`), as runpod's worker does
(rp_scale.py, http_client.AsyncClientSession): httpx's async pool cost the worker ~2 ms of CPU per
job on request building and pool bookkeeping (benchmarks/gateway.py). aiohttp is imported only
when that session is created, so `import skiff.serverless` stays light. Progress updates and the
heartbeat are rare and run in threads, so they use httpx (`post_sync`, the heartbeat's client).

Wire details mirror the runpod SDK 1.12 (runpod/serverless/modules/): http_client.py (the
`Authorization` header carries the bare key), rp_http.py (result bodies and their headers).
"""

from __future__ import annotations

import asyncio
import json
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from skiff._version import __version__
from skiff.worker.config import GatewayConfig
from skiff.worker.log import log

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

Body = dict[str, Any]


def get_headers(config: GatewayConfig) -> dict[str, str]:
    # http_client.get_auth_header: the bare key, not "Bearer <key>".
    return {"Content-Type": "application/json", "Authorization": config.api_key, "User-Agent": USER_AGENT}


def post_headers(config: GatewayConfig, job_id: str) -> dict[str, str]:
    # rp_http._transmit: a JSON body labelled as a form, plus a stray `charset` header.
    return {
        "Authorization": config.api_key,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/x-www-form-urlencoded",
        "charset": "utf-8",
        "X-Request-ID": job_id,
    }


def safe_url(url: str) -> str:
    # Query strings may carry secrets; log only scheme, host and path.
    return url.split("?", 1)[0]


def dumps(body: Body) -> str:
    return json.dumps(body, ensure_ascii=False)


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
        super().__init__(f"{safe_url(url)} answered HTTP {status}")
        self.status = status


def describe_rejection(status: int, url: str) -> str:
    return (
        f"The gateway rejected this worker's key (HTTP {status}) at {safe_url(url)}. "
        "Check RUNPOD_AI_API_KEY: it must be the worker key issued for this endpoint."
    )


def retryable(status: int) -> bool:
    return status == 429 or status >= 500


def post_sync(config: GatewayConfig, url: str, body: Body, job_id: str) -> None:
    """POST a result body with retries, blocking (used off the event loop by progress updates)."""
    backoff = Backoff()
    with httpx.Client(timeout=30.0) as client:
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                response = client.post(url, content=dumps(body), headers=post_headers(config, job_id))
            except httpx.TransportError as err:
                if attempt == POST_ATTEMPTS:
                    raise
                log.warn(f"Could not reach the gateway ({type(err).__name__}); retrying.", job_id)
            else:
                if response.status_code < 400:
                    return
                if not retryable(response.status_code) or attempt == POST_ATTEMPTS:
                    response.raise_for_status()
            time.sleep(backoff.next_delay())


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


class GatewayHttp:
    """The job loop's one HTTP session to the gateway: keep-alive connections, whole replies.

    Must be created inside the running event loop (aiohttp binds the session to it).
    """

    def __init__(self, config: GatewayConfig) -> None:
        import aiohttp  # here, not at module top: see the module docstring

        self._aiohttp = aiohttp
        self._config = config
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

    async def post_result(self, url: str, body: Body, job_id: str, shutting_down: Callable[[], bool]) -> None:
        """POST a job-done or job-stream body, retrying what may pass; failures are logged, not raised."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        give_up_at: float | None = None
        data = dumps(body).encode()
        headers = post_headers(self._config, job_id)
        for attempt in range(1, POST_ATTEMPTS + 1):
            try:
                reply = await self.post(url, data, headers)
            except self.transport_errors as err:
                if shutting_down() and give_up_at is None:
                    give_up_at = loop.time() + SHUTDOWN_POST_BUDGET_S
                if attempt == POST_ATTEMPTS or (give_up_at is not None and loop.time() >= give_up_at):
                    log.error(f"Could not send the result to {safe_url(url)}: {err}", job_id)
                    return
                log.warn(f"Could not reach the gateway ({self.describe(err)}); retrying.", job_id)
            else:
                status = reply.status
                if status < 400:
                    return
                if status in (401, 403):
                    log.error(describe_rejection(status, url), job_id)
                    return
                if not retryable(status) or attempt == POST_ATTEMPTS:
                    text = reply.body[:2000].decode("utf-8", "replace")[:500]
                    log.error(f"{safe_url(url)} answered {status}: {text}", job_id)
                    return
            await asyncio.sleep(backoff.next_delay())

    def describe(self, err: BaseException) -> str:
        """A short name for a transport error; the same names the worker logged under httpx."""
        if isinstance(err, self._aiohttp.ClientConnectorError):
            return "ConnectError"
        if isinstance(err, TimeoutError):
            return "Timeout"
        return type(err).__name__

    async def close(self) -> None:
        await self._session.close()


def aiohttp_missing() -> str | None:
    """Why the job loop cannot run here (aiohttp not installed), or None."""
    try:
        import aiohttp  # noqa: F401  (checked before any job is taken; GatewayHttp uses it)
    except ImportError as err:
        return (
            f"The worker runtime needs aiohttp to talk to the gateway ({err}). "
            "Add `aiohttp>=3.9` to the worker image (the runpod SDK needs it too)."
        )
    return None
