"""Prometheus metrics of a gateway replica, served at `GET /metrics` (text exposition).

Everything here counts what this replica did itself (jobs it finished, requests it answered,
webhooks it sent), so summing a counter over replicas is the
cluster's total. Numbers derived from shared state (queue depth, workers by state, cold starts) are the
leading controller's to export (`skiff_controller.metrics`), never a gateway's.

Each process owns a registry (not prometheus_client's global one), so several stacks in one test
process never collide; `skiff up` renders its controller's registry on the same `/metrics`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skiff_core.jobs import JobRecord

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
# `_created` series double the exposition for a timestamp Prometheus does not use.
disable_created_metrics()
# Queue waits and executions range from milliseconds (a warm worker) to many minutes (a cold GPU
# worker pulling an image, a long generation): wider than prometheus_client's default buckets.
JOB_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, float("inf"))
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))
# Requests naming an endpoint that does not exist are counted under this label, so a client
# probing names cannot grow the number of series.
UNKNOWN = "-"


class GatewayMetrics:
    def __init__(self, known: Callable[[str], bool] = lambda _name: True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Registries of other parts of this process rendered with this one (skiff up: the controller's).
        self.extra: list[CollectorRegistry] = []
        self._known = known
        r = self.registry
        self.jobs = Counter("skiff_jobs_total", "Jobs that reached a final status", ["endpoint", "status"], registry=r)
        self.delay = Histogram(
            "skiff_job_delay_seconds",
            "Time from acceptance to the start of the last delivery (Runpod's delayTime)",
            ["endpoint"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.execution = Histogram(
            "skiff_job_execution_seconds",
            "Time from the start of the last delivery to the final status (Runpod's executionTime)",
            ["endpoint"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.webhooks = Counter(
            "skiff_webhook_deliveries_total",
            "Webhook deliveries by result: delivered, retried (one failed attempt), failed (gave up)",
            ["endpoint", "result"],
            registry=r,
        )
        self.requests = Counter(
            "skiff_http_requests_total", "HTTP requests answered", ["route", "method", "status", "endpoint"], registry=r
        )
        self.latency = Histogram(
            "skiff_http_request_duration_seconds",
            "Time to the response's first byte (long polls included)",
            ["route", "endpoint"],
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        # labels() costs a lock and a dict lookup with tuple building; the hot path reuses children.
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def endpoint_label(self, name: str | None) -> str:
        if not name:
            return ""
        return name if self._known(name) else UNKNOWN

    def job_final(self, job: JobRecord) -> None:
        """One job reached its final status on this replica (called once per job: the winner of
        the compare-and-set)."""
        endpoint = job.endpoint
        self._child(self.jobs, endpoint, job.status.value).inc()
        if job.started_at is not None:
            self._child(self.delay, endpoint).observe(max(0.0, job.started_at - job.created_at))
            if job.completed_at is not None:
                self._child(self.execution, endpoint).observe(max(0.0, job.completed_at - job.started_at))

    def webhook(self, endpoint: str, result: str) -> None:
        self._child(self.webhooks, endpoint, result).inc()

    def request(self, route: str, method: str, status: int, endpoint: str, seconds: float) -> None:
        self._child(self.requests, route, method, str(status), endpoint).inc()
        self._child(self.latency, route, endpoint).observe(seconds)

    def render(self) -> bytes:
        return b"".join(generate_latest(r) for r in (self.registry, *self.extra))


class RequestMetrics:
    """ASGI middleware counting every HTTP request by route template, method, status and endpoint.

    Plain ASGI (not Starlette's BaseHTTPMiddleware, which runs each request in a task of its own):
    one wrapped `send` per request. The route is the matched path template (Starlette puts the
    matched route in the scope), so job and worker ids never become labels.
    """

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        async def counted_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                self._record(scope, message["status"], time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, counted_send)
        except asyncio.CancelledError:
            if not answered:  # the client hung up during a long poll (nginx's 499)
                self._record(scope, 499, time.perf_counter() - started)
            raise
        except Exception:
            if not answered:  # rendered as a 500 by the app's outermost handler
                self._record(scope, 500, time.perf_counter() - started)
            raise

    def _record(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        template = scope.get("skiff.route_template") or getattr(scope.get("route"), "path", None) or "unmatched"
        params = scope.get("path_params") or {}
        endpoint = self.metrics.endpoint_label(params.get("endpoint"))
        self.metrics.request(template, scope["method"], status, endpoint, seconds)
