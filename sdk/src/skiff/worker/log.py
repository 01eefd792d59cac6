"""The worker log: lines in the runpod SDK's format, shared by every part of the worker runtime."""

from __future__ import annotations

import contextlib
import json
import sys

__all__ = ["WorkerLog", "log"]

_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR")
_MAX_MESSAGE = 4096


class WorkerLog:
    """Prints lines in the runpod SDK's format, so log tooling built for runpod workers keeps working.

    Format (runpod/serverless/modules/rp_logger.py, 1.12): `LEVEL  | job_id | message` on stdout,
    or one JSON object per line `{"requestId", "message", "level"}` when RUNPOD_ENDPOINT_ID is set
    (that is how Runpod's log collector expects it). Level from RUNPOD_LOG_LEVEL or
    RUNPOD_DEBUG_LEVEL; Skiff defaults to INFO where runpod defaults to DEBUG, which is noisy.
    Both come from the worker's config (`configure`), which alone reads the environment.
    """

    def __init__(self) -> None:
        self.level = "INFO"
        self.json_lines = False
        # The X-Request-ID the client sent (or the gateway made) for each running job: lines
        # about the job carry it as `xRequestId`, so one id follows a request into worker logs.
        self.request_ids: dict[str, str] = {}

    def bind(self, job: dict[str, object]) -> str:
        """Start tagging lines about this job with its request id (the job-take's `requestId`);
        the worker loop unbinds it once the job is done here."""
        job_id = str(job.get("id"))
        request_id = job.get("requestId")
        if isinstance(request_id, str) and request_id:
            self.request_ids[job_id] = request_id
        return job_id

    def unbind(self, job_id: str) -> None:
        self.request_ids.pop(job_id, None)

    def configure(self, *, json_lines: bool, level: str | None) -> None:
        self.json_lines = json_lines
        if level:
            self.set_level(level)

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
        request_id = self.request_ids.get(job_id) if job_id else None
        if self.json_lines:
            fields = {"requestId": job_id, "message": text, "level": level}
            if request_id:
                fields["xRequestId"] = request_id
            line = json.dumps(fields)
        elif job_id:
            tag = f"{job_id} [{request_id}]" if request_id else job_id
            line = f"{level.ljust(7)}| {tag} | {text}"
        else:
            line = f"{level.ljust(7)}| {text}"
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
