"""Skiff SDK: the worker runtime (`skiff.serverless`) and the client (`skiff.Endpoint`).

Everything under `skiff.sdk` imports with only httpx, pydantic and the standard library, so it
fits in a slim worker image. This module holds the one piece every part shares: the worker log.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from skiff import __version__

__all__ = ["SDK_VERSION", "SKIFF_VERSION", "WorkerLog", "log"]

# Sent where the runpod SDK sends `runpod_version` (ping query, error reports): the gateway
# only records it, so it names Skiff rather than pretending to be a runpod release.
SKIFF_VERSION = __version__
SDK_VERSION = f"skiff-{__version__}"

_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_MAX_MESSAGE = 4096


class WorkerLog:
    """Prints lines in the runpod SDK's format, so log tooling built for runpod workers keeps working.

    Format (runpod/serverless/modules/rp_logger.py, 1.12): `LEVEL  | job_id | message` on stdout,
    or one JSON object per line `{"requestId", "message", "level"}` when RUNPOD_ENDPOINT_ID is set
    (that is how Runpod's log collector expects it). Level from RUNPOD_LOG_LEVEL or
    RUNPOD_DEBUG_LEVEL; Skiff defaults to INFO where runpod defaults to DEBUG, which is noisy.
    """

    def __init__(self) -> None:
        self.level = "INFO"
        wanted = os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")
        if wanted:
            self.set_level(wanted)

    def set_level(self, level: str) -> None:
        name = level.strip().upper()
        if name == "WARNING":
            name = "WARN"
        if name not in _LEVELS:
            self.warn(f"Unknown log level {level!r}; expected one of {', '.join(_LEVELS)}. Using INFO.")
            name = "INFO"
        self.level = name

    def enabled(self, level: str) -> bool:
        return _LEVELS.index(level) >= _LEVELS.index(self.level)

    def log(self, message: object, level: str = "INFO", job_id: str | None = None) -> None:
        if not self.enabled(level):
            return
        text = str(message)
        if len(text) > _MAX_MESSAGE:
            half = _MAX_MESSAGE // 2
            text = f"{text[:half]}\n...TRUNCATED {len(text) - _MAX_MESSAGE} CHARACTERS...\n{text[-half:]}"
        if os.environ.get("RUNPOD_ENDPOINT_ID"):
            line = json.dumps({"requestId": job_id, "message": text, "level": level})
        else:
            line = f"{level.ljust(7)}| {job_id} | {text}" if job_id else f"{level.ljust(7)}| {text}"
        # A closed stdout must never take the worker down.
        with contextlib.suppress(OSError, ValueError):
            print(line, file=sys.stdout, flush=True)

    def trace(self, message: object, job_id: str | None = None) -> None:
        self.log(message, "TRACE", job_id)

    def debug(self, message: object, job_id: str | None = None) -> None:
        self.log(message, "DEBUG", job_id)

    def info(self, message: object, job_id: str | None = None) -> None:
        self.log(message, "INFO", job_id)

    def warn(self, message: object, job_id: str | None = None) -> None:
        self.log(message, "WARN", job_id)

    def error(self, message: object, job_id: str | None = None) -> None:
        self.log(message, "ERROR", job_id)


log = WorkerLog()
