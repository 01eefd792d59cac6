"""Request/response helpers shared by the routes: JSON in and out, size limits, API errors."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

T = TypeVar("T")


class ApiError(Exception):
    """Raised anywhere in a route; rendered as `{"error": message}` with the status code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, *, path: str | None = None
) -> Response:
    """Runpod's error shape, `{"error": message}`; OpenAI's on a path under `/openai/` (given
    `path`), where the openai client expects its own."""
    if path is not None and "/openai/" in path:
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return openai_error(status, message, kind, None, headers)
    return json_response({"error": message}, status, headers)


def openai_error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    code: Any = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """OpenAI's error object: https://platform.openai.com/docs/guides/error-codes"""
    return json_response({"error": {"message": message, "type": kind, "param": None, "code": code}}, status, headers)


async def read_body(request: Request, limit: int, *, what: str = "request body") -> bytes:
    """The raw body, refusing with 413 as soon as it exceeds `limit` (before reading it all)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length header") from None
        if size > limit:
            raise ApiError(413, too_large(limit, size, what))
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, too_large(limit, None, what))
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int, size: int | None, what: str = "request body") -> str:
    got = f" (got {size} bytes)" if size is not None else ""
    return f"{what} too large: the limit for this route is {limit // (1024 * 1024)} MB{got}"


def parse_json(raw: bytes, *, what: str = "request body") -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"{what} is not valid JSON: {exc}") from None


def parse_duration_ms(value: Any, field: str) -> float | None:
    """Runpod's policy fields are integer milliseconds; returns seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ApiError(400, f"{field} must be a positive number of milliseconds")
    return float(value) / 1000.0


async def interruptible(work: Awaitable[T], *enders: set[Callable[[], None]]) -> T | None:
    """Await `work`, or give it up (None) as soon as someone calls the ender this adds to each of
    `enders` while it is parked. The ender cancels this handler's task (the way asyncio.timeout
    does), which costs less on the hot path than running the work as a task of its own."""
    handler = asyncio.current_task()
    assert handler is not None
    ended = False

    def end() -> None:
        nonlocal ended
        if not ended:
            ended = True
            handler.cancel()

    for group in enders:
        group.add(end)
    try:
        return await work
    except asyncio.CancelledError:
        if ended and handler.uncancel() == 0:
            return None
        raise
    finally:
        for group in enders:
            group.discard(end)


async def unless_disconnected(
    request: Request, work: Awaitable[T], enders: set[Callable[[], None]] | None = None
) -> T | None:
    """Await a long poll, or give it up (None) as soon as the caller hangs up, or when someone
    calls the ender this adds to `enders` while the poll is parked.

    uvicorn keeps a handler running after its client is gone, so without this a dead worker's
    job-take could still lease a job to nobody, and a stopping server would wait for every such
    poll to time out. Giving up is never worse than letting the poll run: either way a job leased
    to a closed connection comes back when its lease runs out or its worker is declared lost.
    """
    hang_up: set[Callable[[], None]] = set()

    async def watch() -> None:
        # The request's body (empty for GET) comes first; the next message is the disconnect.
        while (await request.receive())["type"] != "http.disconnect":
            pass
        for end in list(hang_up):
            end()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await interruptible(work, hang_up, *(() if enders is None else (enders,)))
    finally:
        watcher.cancel()
