"""The worker's configuration, read from the RUNPOD_* environment once, when the worker starts.

This is the only module of the worker runtime that reads the environment. The worker id in
particular is generated here when RUNPOD_POD_ID is unset, so the job loop, the heartbeat and
progress updates, which all receive this object, name the same worker to the gateway.

Variables (as the runpod SDK 1.12 reads them): RUNPOD_WEBHOOK_GET_JOB (job-take; `$ID` is the
worker id; unset means no platform: local test mode), RUNPOD_WEBHOOK_POST_OUTPUT (job-done) and
RUNPOD_WEBHOOK_POST_STREAM (job-stream; `$RUNPOD_POD_ID` is the worker id, `$ID` the job id),
RUNPOD_WEBHOOK_PING, RUNPOD_PING_INTERVAL (ms), RUNPOD_AI_API_KEY, RUNPOD_POD_ID,
RUNPOD_POD_HOSTNAME, RUNPOD_ENDPOINT_ID, RUNPOD_LOG_LEVEL / RUNPOD_DEBUG_LEVEL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

_DEFAULT_PING_INTERVAL_MS = 10000.0


@dataclass(frozen=True)
class GatewayConfig:
    """Where and as whom the worker talks to the gateway: URLs with the worker id filled in, the key."""

    worker_id: str
    take_url: str
    done_template: str
    stream_template: str
    ping_url: str | None
    api_key: str
    ping_interval_s: float
    endpoint_id: str | None = None
    hostname: str = "unknown"  # for error reports, as runpod's

    def take(self, batch_size: int, in_progress: bool) -> str:
        url = self.take_url
        if batch_size > 1:
            url = url.replace("/job-take/", "/job-take-batch/") + f"&batch_size={batch_size}"
        return url + f"&job_in_progress={'1' if in_progress else '0'}"

    @property
    def stop_url(self) -> str | None:
        # rp_job._job_stop_url: derived from the job-take URL, query string kept.
        if "/job-take/" not in self.take_url:
            return None
        return self.take_url.replace("/job-take/", "/job-stop/")

    def done_url(self, job_id: str, is_stream: bool) -> str:
        return self.done_template.replace("$ID", job_id) + f"&isStream={'true' if is_stream else 'false'}"

    def stream_url(self, job_id: str) -> str:
        # runpod's stream_result never passes is_stream, so job-stream always says false.
        return self.stream_template.replace("$ID", job_id) + "&isStream=false"


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker runtime takes from its environment."""

    worker_id: str
    hostname: str
    endpoint_id: str | None
    log_level: str | None
    # None when RUNPOD_WEBHOOK_GET_JOB is unset: not under a platform, so only local test modes run.
    gateway: GatewayConfig | None
    # Problems found while reading, for the caller to log once the log is configured.
    warnings: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> WorkerConfig:
        env = os.environ if env is None else env
        worker_id = env.get("RUNPOD_POD_ID") or str(uuid.uuid4())
        endpoint_id = env.get("RUNPOD_ENDPOINT_ID") or None
        hostname = env.get("RUNPOD_POD_HOSTNAME", "unknown")
        warnings: list[str] = []
        gateway = None
        take = env.get("RUNPOD_WEBHOOK_GET_JOB")
        if take is not None:
            try:
                interval_ms = float(env.get("RUNPOD_PING_INTERVAL", str(_DEFAULT_PING_INTERVAL_MS)))
            except ValueError:
                warnings.append("RUNPOD_PING_INTERVAL is not a number of milliseconds; using 10000.")
                interval_ms = _DEFAULT_PING_INTERVAL_MS
            ping = env.get("RUNPOD_WEBHOOK_PING")
            gateway = GatewayConfig(
                worker_id=worker_id,
                # rp_job.py: `$ID` in the job-take URL is the worker id.
                take_url=take.replace("$ID", worker_id),
                # rp_http.py: `$RUNPOD_POD_ID` is the worker id; `$ID` becomes the job id per request.
                done_template=env.get("RUNPOD_WEBHOOK_POST_OUTPUT", "").replace("$RUNPOD_POD_ID", worker_id),
                stream_template=env.get("RUNPOD_WEBHOOK_POST_STREAM", "").replace("$RUNPOD_POD_ID", worker_id),
                ping_url=ping.replace("$RUNPOD_POD_ID", worker_id) if ping else None,
                api_key=env.get("RUNPOD_AI_API_KEY", ""),
                ping_interval_s=max(interval_ms / 1000.0, 0.1),
                endpoint_id=endpoint_id,
                hostname=hostname,
            )
        return cls(
            worker_id=worker_id,
            hostname=hostname,
            endpoint_id=endpoint_id,
            log_level=env.get("RUNPOD_LOG_LEVEL") or env.get("RUNPOD_DEBUG_LEVEL") or None,
            gateway=gateway,
            warnings=tuple(warnings),
        )
