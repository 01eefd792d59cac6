"""The heartbeat: GET the ping URL every RUNPOD_PING_INTERVAL ms with the in-progress job ids.

Request shape as runpod's rp_ping.py (SDK 1.12). Each ping renews the leases of the jobs it lists,
so a worker that runs long jobs must ping. runpod pings only when RUNPOD_POD_ID is set; Skiff also
pings under the id it generated otherwise (the one its job-take uses), so a worker started by
hand against a gateway keeps its jobs' leases too.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable

import httpx

from skiff._version import SDK_VERSION
from skiff.worker.config import GatewayConfig
from skiff.worker.log import log
from skiff.worker.transport import USER_AGENT, describe_rejection


class Heartbeat:
    """Pings from a thread, not an asyncio task: an async handler that blocks the event loop
    (common with model code) must not make the worker look dead. runpod uses a separate process
    for the same reason."""

    def __init__(self, config: GatewayConfig, job_ids: Callable[[], list[str]]) -> None:
        self._config = config
        self._job_ids = job_ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="skiff-heartbeat", daemon=True)

    @staticmethod
    def wanted(config: GatewayConfig) -> bool:
        # rp_ping.start_ping pings only with a key and a ping URL (and a pod id: see the module docstring).
        return bool(config.api_key and config.ping_url)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        url = self._config.ping_url
        assert url is not None
        interval = self._config.ping_interval_s
        headers = {"Authorization": self._config.api_key, "User-Agent": USER_AGENT}
        # httpx `params=` would replace the URL's own query string; requests (runpod) appends.
        sep = "&" if "?" in url else "?"
        with httpx.Client(timeout=max(interval * 2, 5.0), headers=headers) as client:
            while not self._stop.is_set():
                params = {}
                ids = self._job_ids()
                if ids:  # requests drops a None param, so runpod omits job_id when idle
                    params["job_id"] = ",".join(ids)
                params["runpod_version"] = SDK_VERSION
                try:
                    response = client.get(f"{url}{sep}{urllib.parse.urlencode(params)}")
                    if response.status_code in (401, 403):
                        log.error(describe_rejection(response.status_code, url))
                    log.trace(f"Heartbeat sent: {response.status_code}")
                except httpx.HTTPError as err:
                    log.warn(f"Ping failed ({type(err).__name__}: {err}); will retry.")
                self._stop.wait(interval)
