"""The gateway's last word on a failed request: a JSON error every client can read.

An ASGI middleware between Starlette's ServerErrorMiddleware and its ExceptionMiddleware:

- An exception no route handled becomes 503 + Retry-After (a store or queue outage), 507 (a full
  disk) or 500 (a bug, logged once with its traceback), see skiff_core.outages. Caught here, it
  does not reach ServerErrorMiddleware, which would re-raise it for uvicorn to log a second time.
- A client that hangs up before sending its whole body gets one log line, not a traceback.
- An error answered before the request body was read (413 on a declared size, 401, 404, ...) first
  reads and discards the rest of the body, up to a bound, as nginx's lingering close does: a
  client that writes its whole body before reading (Python's urllib, many others) would otherwise
  meet a connection reset instead of the answer.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiff_core.outages import classify
from skiff_gateway.http import error_response

log = logging.getLogger("skiff.gateway")

RETRY_AFTER_S = 5
# What an early error reads of the body it did not want, at most, before answering.
DISCARD_MAX_BYTES = 64 * 1024 * 1024
DISCARD_MAX_S = 15.0


class ErrorMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        exchange = _Exchange(scope, receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        except ClientDisconnect:
            log.warning("%s %s: the client hung up before sending its whole body", scope["method"], scope["path"])
        except Exception as exc:
            if exchange.started:
                raise  # too late to answer: the server aborts the connection, as it should
            outage = classify(exc)
            if outage is None:
                log.exception("unexpected error in %s %s", scope["method"], scope["path"])
                response = error_response(500, "internal error; see the gateway log", path=scope["path"])
            else:
                log.warning(
                    "%s %s: %d (%s: %s)", scope["method"], scope["path"], outage.status, type(exc).__name__, exc
                )
                retry = {"Retry-After": str(RETRY_AFTER_S)}
                response = error_response(outage.status, outage.message, retry, path=scope["path"])
            await response(scope, exchange.receive, exchange.send)


class _Exchange:
    """Wraps receive and send to know whether the body was read and the answer begun."""

    __slots__ = ("_receive", "_scope", "_send", "body_done", "started")

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self.body_done = False
        self.started = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.body_done = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            if message["status"] >= 400 and not self.body_done and not await self._discard_body():
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
        await self._send(message)

    async def _discard_body(self) -> bool:
        """Read the unread body away; False when it is beyond the bound (the connection closes)."""
        for name, value in self._scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > DISCARD_MAX_BYTES:
                return False
        read = 0
        try:
            async with asyncio.timeout(DISCARD_MAX_S):
                while not self.body_done:
                    message = await self.receive()
                    read += len(message.get("body", b""))
                    if read > DISCARD_MAX_BYTES:
                        return False
        except TimeoutError:
            return False
        return True
