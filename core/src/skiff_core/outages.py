"""Failures of a backing service that a client can act on: "retry later" or "no space left".

A store or queue that is down or restarting (Redis, SQS, a busy SQLite file) is an outage: the
gateway answers 503 with Retry-After, and the client retries the same request. A full disk
(ENOSPC, SQLite's SQLITE_FULL, Redis refusing writes it cannot persist) is 507. Anything else is
a bug and stays a 500. The messages name the service, never its address: the details go to the
gateway's log.

redis and botocore are optional (the cluster extras); their errors are only looked for when they
are installed.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from dataclasses import dataclass


class QueueMissing(LookupError):
    """An endpoint's queue does not exist and could not be (re)created."""


@dataclass(frozen=True, slots=True)
class Outage:
    status: int  # 503 (retry later) or 507 (no space left)
    message: str


STORE_DOWN = Outage(503, "the job store is unavailable; retry later")
QUEUE_DOWN = Outage(503, "the queue or payload service is unavailable; retry later")
DISK_FULL = Outage(507, "no space left to store the job; retry once space is freed")

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_AWS_RETRY_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "SlowDown",
        "RequestTimeout",
    }
)


def classify(exc: BaseException) -> Outage | None:
    """The outage behind `exc` (or behind what it was raised from), or None for a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _one(current)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _one(exc: BaseException) -> Outage | None:
    if isinstance(exc, QueueMissing):
        return Outage(503, f"{exc}; retry later")
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return DISK_FULL
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if primary == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
            return DISK_FULL
        if primary in _SQLITE_BUSY or "database is locked" in str(exc):
            return STORE_DOWN
        return None
    return _redis(exc) or _botocore(exc) or (STORE_DOWN if isinstance(exc, ConnectionError) else None)


def _redis(exc: BaseException) -> Outage | None:
    try:
        from redis import exceptions as redis_errors
    except ImportError:
        return None
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith("MISCONF"):
        return DISK_FULL  # Redis refuses writes it cannot persist (its disk is full)
    if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError | redis_errors.ReadOnlyError):
        return STORE_DOWN  # BusyLoadingError (replaying its append-only file) is a ConnectionError
    return None


def _botocore(exc: BaseException) -> Outage | None:
    try:
        from botocore import exceptions as boto_errors
    except ImportError:
        return None
    if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError):
        return QUEUE_DOWN
    if isinstance(exc, boto_errors.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if error.get("Code") in _AWS_RETRY_CODES or (isinstance(status, int) and status >= 500):
            return QUEUE_DOWN
    return None


def log_failure(log: logging.Logger, exc: BaseException, message: str, *args: object) -> None:
    """For a background loop that retries: an outage is one warning line, a bug its traceback."""
    if classify(exc) is None:
        log.error(message, *args, exc_info=exc)
    else:
        log.warning(message + " (%s: %s)", *args, type(exc).__name__, exc)
