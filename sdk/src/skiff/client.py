"""Client for queue endpoints: `skiff.Endpoint` (blocking) and `skiff.AsyncEndpoint` (asyncio).

Method names and return values follow runpod's `runpod.Endpoint` (runpod/endpoint/runner.py,
SDK 1.12): `run(input) -> Job`, `run_sync(input, timeout)` returns the output, `Job.status()`
returns the status string, `Job.output(timeout)`, `Job.stream()` yields each chunk's output.
Routes and bodies are Runpod's v2 API: `POST {base}/v2/{endpoint}/run` with
`{"input": ..., "webhook"?, "policy"?}` and `Authorization: Bearer <key>`.

Unlike runpod, an HTTP error answers with `SkiffAPIError` carrying the server's JSON message,
and an unreachable server raises `SkiffConnectionError` naming the URL.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from skiff._version import __version__

__all__ = [
    "AsyncEndpoint",
    "AsyncJob",
    "Endpoint",
    "Job",
    "SkiffAPIError",
    "SkiffAuthError",
    "SkiffConnectionError",
    "SkiffError",
    "SkiffNotFoundError",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
REQUEST_TIMEOUT_S = 10.0  # runpod's default per request
RUNSYNC_TIMEOUT_S = 86400.0  # runpod's run_sync default
_RETRY_STATUSES = frozenset({408, 429})  # runpod's client retries these (Retry(status_forcelist))
_ATTEMPTS = 5
_USER_AGENT = f"Skiff-Python-SDK/{__version__}"


class SkiffError(Exception):
    """Base class of the client's errors."""


class SkiffConnectionError(SkiffError):
    """The server could not be reached."""


class SkiffAPIError(SkiffError):
    """The server answered with an HTTP error; `message` is its own explanation."""

    def __init__(self, status_code: int, message: str, body: Any = None, url: str = "") -> None:
        self.status_code, self.message, self.body, self.url = status_code, message, body, url
        super().__init__(f"HTTP {status_code} from {url}: {message}" if url else f"HTTP {status_code}: {message}")


class SkiffAuthError(SkiffAPIError):
    """401/403: the API key is missing or wrong."""


class SkiffNotFoundError(SkiffAPIError):
    """404: no such endpoint or job (jobs expire after their retention window)."""


# --------------------------------------------------------------------------- shared, I/O-free


def _v2_base(base_url: str | None) -> str:
    base = (base_url or os.environ.get("SKIFF_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
    # Accept Runpod's own form ("https://api.runpod.ai/v2") as well as a bare host.
    return base if base.endswith("/v2") else f"{base}/v2"


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": _USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _request_body(request_input: Any, webhook: str | None, policy: dict[str, Any] | None) -> dict[str, Any]:
    # runpod wraps unless the caller passed a full request ({"input": ...}); same here.
    body = (
        dict(request_input)
        if isinstance(request_input, dict) and "input" in request_input
        else {"input": request_input}
    )
    if webhook is not None:
        body["webhook"] = webhook
    if policy is not None:
        body["policy"] = policy
    return body


def _error_message(response: httpx.Response) -> tuple[str, Any]:
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return (text[:500] or response.reason_phrase or "no message"), text
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if body.get(key):
                value = body[key]
                return (value if isinstance(value, str) else str(value)), body
    return str(body)[:500], body


def _parse(response: httpx.Response) -> Any:
    status = response.status_code
    if status >= 400:
        message, body = _error_message(response)
        url = str(response.request.url)
        cls = SkiffAuthError if status in (401, 403) else SkiffNotFoundError if status == 404 else SkiffAPIError
        raise cls(status, message, body, url)
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError as err:
        raise SkiffAPIError(status, f"response is not JSON: {response.text[:200]!r}") from err


def _connection_error(url: str, err: Exception) -> SkiffConnectionError:
    return SkiffConnectionError(f"cannot reach Skiff at {url}: {type(err).__name__}: {err}")


def _backoff(attempt: int) -> float:
    return min(0.25 * 2**attempt, 4.0)


def _next_poll(delay: float) -> float:
    # Poll fast first (most jobs are short), then settle at runpod's 1 s.
    return min(delay * 1.5, 1.0)


# --------------------------------------------------------------------------- blocking


class Job:
    """A submitted job (runpod's `Job`): `id`, `status()`, `output()`, `stream()`, `cancel()`."""

    def __init__(self, endpoint: Endpoint, job_id: str) -> None:
        self.endpoint = endpoint
        self.id = job_id
        self.job_id = job_id  # runpod's attribute name
        self._final: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Job(endpoint={self.endpoint.name!r}, id={self.id!r})"

    def _fetch(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        state = self.endpoint.status(self.id)
        if state.get("status") in FINAL_STATES:
            self._final = state
        return state

    def status(self) -> str:
        return str(self._fetch()["status"])

    def details(self) -> dict[str, Any]:
        """The whole status response: status, output or error, delayTime, executionTime, workerId."""
        return self._fetch()

    def output(self, timeout: float = 0) -> Any:
        """The job's output; with `timeout` > 0 wait up to that many seconds (TimeoutError after).

        As runpod, a job that ended without output (failed, cancelled) gives None: see details().
        """
        deadline = time.monotonic() + timeout
        delay = 0.05
        state = self._fetch()
        while timeout > 0 and state.get("status") not in FINAL_STATES:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Job {self.id} did not finish within {timeout} s")
            time.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = _next_poll(delay)
            state = self._fetch()
        return state.get("output")

    def stream(self) -> Iterator[Any]:
        """Yield each streamed chunk's output until the job is final and nothing is left."""
        return self.endpoint.stream(self.id)

    def cancel(self) -> dict[str, Any]:
        return self.endpoint.cancel(self.id)


class Endpoint:
    """`Endpoint("echo").run_sync({"x": 1})`; base_url from SKIFF_BASE_URL, api_key from SKIFF_API_KEY."""

    def __init__(
        self,
        name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"endpoint name must be a non-empty name without '/', got {name!r}")
        self.name = name
        self.endpoint_id = name  # runpod's attribute name
        self.base_url = _v2_base(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("SKIFF_API_KEY")
        self.timeout = timeout
        self._http = httpx.Client(headers=_headers(self.api_key), timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"Endpoint({self.name!r}, base_url={self.base_url!r})"

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url, self.name, *parts])

    def _call(self, method: str, url: str, json: Any = None, timeout: float | None = None) -> Any:
        for attempt in range(_ATTEMPTS):
            try:
                response = self._http.request(
                    method, url, json=json, timeout=timeout if timeout is not None else self.timeout
                )
            except httpx.ConnectError as err:  # nothing was sent: safe to retry even a POST
                if attempt == _ATTEMPTS - 1:
                    raise _connection_error(url, err) from err
            except httpx.TimeoutException as err:
                raise _connection_error(url, err) from err
            except httpx.TransportError as err:
                raise _connection_error(url, err) from err
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == _ATTEMPTS - 1:
                    return _parse(response)
            time.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    def run(self, request_input: Any, webhook: str | None = None, policy: dict[str, Any] | None = None) -> Job:
        body = _request_body(request_input, webhook, policy)
        answer = self._call("POST", self._url("run"), json=body)
        return Job(self, str(answer["id"]))

    def run_sync(
        self,
        request_input: Any,
        timeout: float = RUNSYNC_TIMEOUT_S,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> Any:
        """Run and wait up to `timeout` seconds; returns the output (None if the job failed, as runpod)."""
        body = _request_body(request_input, webhook, policy)
        answer = self._call("POST", self._url("runsync"), json=body, timeout=timeout)
        if answer.get("status") in FINAL_STATES:
            return answer.get("output")
        return Job(self, str(answer["id"])).output(timeout=timeout)

    def status(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", self._url("status", job_id))
        return result

    def output(self, job_id: str, timeout: float = 0) -> Any:
        return Job(self, job_id).output(timeout=timeout)

    def stream(self, job_id: str) -> Iterator[Any]:
        delay = 0.05
        while True:
            part = self._call("GET", self._url("stream", job_id))
            chunks = part.get("stream") or []
            for chunk in chunks:
                yield chunk.get("output") if isinstance(chunk, dict) else chunk
            if part.get("status") in FINAL_STATES and not chunks:
                return
            if chunks:
                delay = 0.05
            else:
                time.sleep(delay)
                delay = _next_poll(delay)

    def cancel(self, job_id: str, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._url("cancel", job_id), timeout=timeout)
        return result

    def retry(self, job_id: str, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._url("retry", job_id), timeout=timeout)
        return result

    def health(self, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", self._url("health"), timeout=timeout)
        return result

    def purge_queue(self, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", self._url("purge-queue"), timeout=timeout)
        return result


# --------------------------------------------------------------------------- asyncio


class AsyncJob:
    """The asyncio twin of `Job`: every method is a coroutine, `stream()` an async iterator."""

    def __init__(self, endpoint: AsyncEndpoint, job_id: str) -> None:
        self.endpoint = endpoint
        self.id = job_id
        self.job_id = job_id
        self._final: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"AsyncJob(endpoint={self.endpoint.name!r}, id={self.id!r})"

    async def _fetch(self) -> dict[str, Any]:
        if self._final is not None:
            return self._final
        state = await self.endpoint.status(self.id)
        if state.get("status") in FINAL_STATES:
            self._final = state
        return state

    async def status(self) -> str:
        return str((await self._fetch())["status"])

    async def details(self) -> dict[str, Any]:
        return await self._fetch()

    async def output(self, timeout: float = 0) -> Any:
        deadline = time.monotonic() + timeout
        delay = 0.05
        state = await self._fetch()
        while timeout > 0 and state.get("status") not in FINAL_STATES:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Job {self.id} did not finish within {timeout} s")
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = _next_poll(delay)
            state = await self._fetch()
        return state.get("output")

    def stream(self) -> AsyncIterator[Any]:
        return self.endpoint.stream(self.id)

    async def cancel(self) -> dict[str, Any]:
        return await self.endpoint.cancel(self.id)


class AsyncEndpoint:
    """`async with AsyncEndpoint("echo") as ep: out = await ep.run_sync({...})`."""

    def __init__(
        self,
        name: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not name or "/" in name:
            raise ValueError(f"endpoint name must be a non-empty name without '/', got {name!r}")
        self.name = name
        self.endpoint_id = name
        self.base_url = _v2_base(base_url)
        self.api_key = api_key if api_key is not None else os.environ.get("SKIFF_API_KEY")
        self.timeout = timeout
        self._http = httpx.AsyncClient(headers=_headers(self.api_key), timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return f"AsyncEndpoint({self.name!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> AsyncEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def _url(self, *parts: str) -> str:
        return "/".join([self.base_url, self.name, *parts])

    async def _call(self, method: str, url: str, json: Any = None, timeout: float | None = None) -> Any:
        for attempt in range(_ATTEMPTS):
            try:
                response = await self._http.request(
                    method, url, json=json, timeout=timeout if timeout is not None else self.timeout
                )
            except httpx.ConnectError as err:
                if attempt == _ATTEMPTS - 1:
                    raise _connection_error(url, err) from err
            except httpx.TransportError as err:
                raise _connection_error(url, err) from err
            else:
                if response.status_code not in _RETRY_STATUSES or attempt == _ATTEMPTS - 1:
                    return _parse(response)
            await asyncio.sleep(_backoff(attempt))
        raise AssertionError("unreachable")

    async def run(
        self, request_input: Any, webhook: str | None = None, policy: dict[str, Any] | None = None
    ) -> AsyncJob:
        answer = await self._call("POST", self._url("run"), json=_request_body(request_input, webhook, policy))
        return AsyncJob(self, str(answer["id"]))

    async def run_sync(
        self,
        request_input: Any,
        timeout: float = RUNSYNC_TIMEOUT_S,
        webhook: str | None = None,
        policy: dict[str, Any] | None = None,
    ) -> Any:
        body = _request_body(request_input, webhook, policy)
        answer = await self._call("POST", self._url("runsync"), json=body, timeout=timeout)
        if answer.get("status") in FINAL_STATES:
            return answer.get("output")
        return await AsyncJob(self, str(answer["id"])).output(timeout=timeout)

    async def status(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", self._url("status", job_id))
        return result

    async def output(self, job_id: str, timeout: float = 0) -> Any:
        return await AsyncJob(self, job_id).output(timeout=timeout)

    async def stream(self, job_id: str) -> AsyncIterator[Any]:
        delay = 0.05
        while True:
            part = await self._call("GET", self._url("stream", job_id))
            chunks = part.get("stream") or []
            for chunk in chunks:
                yield chunk.get("output") if isinstance(chunk, dict) else chunk
            if part.get("status") in FINAL_STATES and not chunks:
                return
            if chunks:
                delay = 0.05
            else:
                await asyncio.sleep(delay)
                delay = _next_poll(delay)

    async def cancel(self, job_id: str, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", self._url("cancel", job_id), timeout=timeout)
        return result

    async def retry(self, job_id: str, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", self._url("retry", job_id), timeout=timeout)
        return result

    async def health(self, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", self._url("health"), timeout=timeout)
        return result

    async def purge_queue(self, timeout: float = 3) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", self._url("purge-queue"), timeout=timeout)
        return result
