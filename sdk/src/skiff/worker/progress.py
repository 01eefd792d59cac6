"""`progress_update(job, progress)`: report progress of a running job.

Runpod's SDK (runpod/serverless/modules/rp_progress.py, 1.12) posts
`{"status": "IN_PROGRESS", "output": <progress>}` to the *job-done* URL with `isStream=false`,
each update from a fresh thread and event loop; the platform keeps the job IN_PROGRESS and shows
the output as progress. Skiff sends the same request, but from one background thread in call
order, and the job loop waits for a job's pending updates before it sends that job's final
result, so an update can never land after (and appear to overwrite) the job's real outcome.

Until a worker serves jobs from a gateway (`connect`), updates are only logged: that is what the
local test modes show.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from skiff.worker.config import GatewayConfig
from skiff.worker.log import log
from skiff.worker.transport import post_sync

_FLUSH_TIMEOUT_S = 10.0


class ProgressSender:
    """Sends updates in call order from one thread, to `gateway` (or to the log when it is None)."""

    def __init__(self, gateway: GatewayConfig | None) -> None:
        self._gateway = gateway
        self._queue: queue.Queue[tuple[dict[str, Any], Any]] = queue.Queue()
        self._pending: dict[str, int] = {}
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def submit(self, job: dict[str, Any], progress: Any) -> None:
        job_id = str(job["id"])
        with self._cond:
            self._pending[job_id] = self._pending.get(job_id, 0) + 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="skiff-progress", daemon=True)
                self._thread.start()
        self._queue.put((job, progress))

    def has_pending(self, job_id: str) -> bool:
        """Whether updates for `job_id` are still queued (a racy read is fine: only submitters add)."""
        return self._pending.get(job_id, 0) > 0

    def wait_flushed(self, job_id: str, timeout: float = _FLUSH_TIMEOUT_S) -> bool:
        """Block until every update submitted for `job_id` has been sent (or `timeout` passed)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending.get(job_id, 0) == 0, timeout)

    def _run(self) -> None:
        gateway = self._gateway
        while True:
            job, progress = self._queue.get()
            job_id = str(job["id"])
            try:
                if gateway is None:
                    log.info(f"Progress update: {progress}", job_id)
                else:
                    body = {"status": "IN_PROGRESS", "output": progress}
                    post_sync(gateway, gateway.done_url(job_id, is_stream=False), body, job_id)
                    log.debug(f"Progress Update Sent: {progress}", job_id)
            except Exception as err:  # a progress report must never break the job
                log.error(f"Progress update failed: {type(err).__name__}: {err}", job_id)
            finally:
                with self._cond:
                    left = self._pending.get(job_id, 1) - 1
                    if left <= 0:
                        self._pending.pop(job_id, None)
                    else:
                        self._pending[job_id] = left
                    self._cond.notify_all()


_sender = ProgressSender(None)


def connect(gateway: GatewayConfig) -> ProgressSender:
    """Send every later update to `gateway`; called once when the worker starts serving jobs."""
    global _sender
    _sender = ProgressSender(gateway)
    return _sender


def progress_update(job: dict[str, Any], progress: Any) -> None:
    """Report `progress` (any JSON value) for the running `job` without blocking the handler."""
    if not isinstance(job, dict) or "id" not in job:
        raise ValueError("progress_update(job, progress): pass the job dict your handler received")
    _sender.submit(job, progress)
