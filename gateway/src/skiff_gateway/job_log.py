"""Logs that follow a job: one JSON line per status change on the `skiff.jobs` logger (INFO, so
`SKIFF_LOG_LEVEL=INFO` turns them on), and the request id that ties a client's request to them.

A client may send `X-Request-ID` with /run or /runsync (a short token: letters, digits, `.`, `_`,
`:`, `-`); otherwise the gateway makes one. It is answered back in the same header, stored with
the job, handed to the worker in the job-take as `requestId`, and the Skiff SDK's log lines about
the job carry it as `xRequestId`.
"""

from __future__ import annotations

import logging
import re
import uuid

import orjson
from starlette.requests import Request

from skiff_core.jobs import JobRecord

log = logging.getLogger("skiff.jobs")

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(request: Request) -> str:
    """The client's X-Request-ID when it is a sane token, else a new one."""
    given = request.headers.get("x-request-id")
    if given is not None and _VALID.fullmatch(given):
        return given
    return uuid.uuid4().hex


def transition(job: JobRecord, status: str | None = None) -> None:
    """Log the job's new status (`status` overrides the record's, for callers that log before
    storing). Nothing is built when INFO is off."""
    if not log.isEnabledFor(logging.INFO):
        return
    line = {
        "event": "job",
        "status": status or job.status.value,
        "job_id": job.id,
        "endpoint": job.endpoint,
        "worker_id": job.worker_id,
        "retries": job.retries,
        "request_id": job.request_id,
    }
    if job.error is not None and job.status.final:
        line["error"] = str(job.error)[:500]
    log.info(orjson.dumps(line).decode())
