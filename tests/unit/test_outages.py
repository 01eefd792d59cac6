"""Which failures are outages (503), which a full disk (507), and which bugs (500)."""

from __future__ import annotations

import errno
import sqlite3

import botocore.exceptions
import pytest
import redis.exceptions

from skiff_core.outages import classify


def _sqlite_error(code: int, message: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 507),
        (_sqlite_error(sqlite3.SQLITE_FULL, "database or disk is full"), 507),
        (redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots"), 507),
        (_sqlite_error(sqlite3.SQLITE_BUSY, "database is locked"), 503),
        (redis.exceptions.ConnectionError("Error 111 connecting"), 503),
        (redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory"), 503),
        (redis.exceptions.TimeoutError("Timeout reading from socket"), 503),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), 503),
        (botocore.exceptions.ClientError({"Error": {"Code": "ServiceUnavailable"}}, "SendMessage"), 503),
        (ConnectionRefusedError(), 503),
        (ValueError("a bug"), None),
        (KeyError("a bug"), None),
        (_sqlite_error(sqlite3.SQLITE_ERROR, "no such table: jobs"), None),
        (redis.exceptions.ResponseError("WRONGTYPE Operation against a key"), None),
        (botocore.exceptions.ClientError({"Error": {"Code": "InvalidParameterValue"}}, "SendMessage"), None),
    ],
)
def test_classify(exc: BaseException, status: int | None) -> None:
    outage = classify(exc)
    assert (outage.status if outage else None) == status


def test_an_outage_behind_another_exception_is_found() -> None:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("could not write the payload") from inner
    except RuntimeError as outer:
        found = classify(outer)
    assert found is not None and found.status == 507
