"""uvicorn's error log, without the expected noise of a stop.

Workers hold job-take and job-stop long polls open (up to `take_wait_s`). At a stop uvicorn gives
open requests `timeout_graceful_shutdown` seconds, then cancels them and logs each one as
"Exception in ASGI application" with a CancelledError traceback: expected at every stop, and
alarming to read. Nothing is lost by it (a worker's job stays leased until it comes back).
"""

from __future__ import annotations

import asyncio
import logging


class _DropCancelledRequests(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def quiet_cancelled_requests() -> None:
    """Call after building the uvicorn.Config (it configures uvicorn's loggers)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropCancelledRequests) for f in logger.filters):
        logger.addFilter(_DropCancelledRequests())
