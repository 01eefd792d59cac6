"""`progress_update(job, progress)`: report progress of a running job.

Runpod's SDK (runpod/serverless/modules/rp_progress.py, 1.12) posts
`{"status": "IN_PROGRESS", "output": <progress>}` to the *job-done* URL with `isStream=false`,
each update from a fresh thread and event loop; the platform keeps the job IN_PROGRESS and shows
the output as progress. Skiff sends the same request, but from one background thread in call
order, and the worker waits for a job's pending updates before it sends that job's final result,
so an update can never land after (and appear to overwrite) the job's real outcome.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

from skiff.sdk import log

_FLUSH_TIMEOUT_S = 10.0


class _ProgressSender:
    def __init__(self) -> None:
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

    def wait_flushed(self, job_id: str, timeout: float = _FLUSH_TIMEOUT_S) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._pending.get(job_id, 0) == 0, timeout)

    def _run(self) -> None:
        # Imported here: the worker module imports this one.
        from skiff.sdk.worker import GatewayConfig, post_sync

        config = GatewayConfig.from_environ()
        while True:
            job, progress = self._queue.get()
            job_id = str(job["id"])
            try:
                if config is None:
                    log.info(f"Progress update: {progress}", job_id)
                else:
                    body = {"status": "IN_PROGRESS", "output": progress}
                    post_sync(config, config.done_url(job_id, is_stream=False), body, job_id)
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


_sender = _ProgressSender()


def progress_update(job: dict[str, Any], progress: Any) -> None:
    """Report `progress` (any JSON value) for the running `job` without blocking the handler."""
    if not isinstance(job, dict) or "id" not in job:
        raise ValueError("progress_update(job, progress): pass the job dict your handler received")
    _sender.submit(job, progress)


def has_pending(job_id: str) -> bool:
    """Whether updates for `job_id` are still queued (a racy read is fine: only submitters add)."""
    return _sender._pending.get(job_id, 0) > 0


def wait_flushed(job_id: str, timeout: float = _FLUSH_TIMEOUT_S) -> bool:
    """Block until every update submitted for `job_id` has been sent (or `timeout` passed)."""
    return _sender.wait_flushed(job_id, timeout)
