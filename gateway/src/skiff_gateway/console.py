"""The web console at `/console`: a static page (shipped in this package, no CDN) and the JSON it
polls, every call behind the client key.

The page holds no data itself: it asks for a key once, keeps it in the browser's session storage
and sends it as `Authorization: Bearer` on each call, never in a URL. The numbers over time (jobs
per minute, p50/p95 delay and execution) come from the jobs this replica saw finish in the last
hour (`skiff_gateway.job_history`); behind a load balancer each replica shows its share, and Prometheus
(docs/operations.md) has the whole.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from skiff_core.exited_workers import exit_view, recent_exits
from skiff_core.jobs import JobRecord, JobStatus, WorkerState
from skiff_gateway.auth import require_client
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, json_response
from skiff_gateway.routing import RouteTable
from skiff_gateway.waiting import waiting_reason

router = RouteTable()

LOG_TAIL_BYTES = 256 * 1024
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


def _client_ctx(request: Request) -> GatewayContext:
    ctx = _ctx(request)
    require_client(ctx, request)
    return ctx


# ------------------------------------------------------------------ the page and its assets
@router.get("/console")
async def page(request: Request) -> Response:
    # The shell only: no data, so no key to load it; every call it makes carries the key.
    return Response(_asset("index.html"), media_type="text/html", headers=_NO_STORE)


@router.get("/console/{asset}")
async def asset(request: Request, asset: str) -> Response:
    media = _ASSETS.get(asset)
    if media is None:
        raise ApiError(404, f"no console asset {asset!r}")
    return Response(_asset(asset), media_type=media, headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _asset(name: str) -> bytes:
    return resources.files("skiff_gateway").joinpath("console_assets", name).read_bytes()


# ------------------------------------------------------------------ the data
async def _workers(ctx: GatewayContext, endpoint: str) -> list[dict[str, Any]]:
    from skiff_gateway.routes_client import current_workers

    now = time.time()
    done = ctx.console.jobs_done_by(endpoint)
    return [
        {
            "id": w.id,
            "state": "draining" if w.draining else w.state.value,
            "idle_s": None if w.idle_since is None or w.state is not WorkerState.IDLE else now - w.idle_since,
            "cold_start_s": w.cold_start_s,
            "jobs_done": done.get(w.id, 0),
            "jobs": list(w.jobs_in_progress),
            "uptime_s": now - w.launched_at,
        }
        for w in sorted(await current_workers(ctx, endpoint), key=lambda w: w.launched_at)
    ]


async def _control_endpoint(ctx: GatewayContext, endpoint: str) -> dict[str, Any]:
    """What a controller in this process says of the endpoint (skiff up); {} elsewhere."""
    if ctx.control is None:
        return {}
    for entry in (await ctx.control.status()).get("endpoints", []):
        if entry.get("name") == endpoint:
            found: dict[str, Any] = entry
            return found
    return {}


@router.get("/v1/console/endpoints")
async def endpoints(request: Request) -> Response:
    ctx = _client_ctx(request)
    now = time.time()
    out = []
    for spec in ctx.catalog.all():
        workers = await _workers(ctx, spec.name)
        by_state: dict[str, int] = {}
        for worker in workers:
            by_state[worker["state"]] = by_state.get(worker["state"], 0) + 1
        stats = await ctx.queue.stats(spec.name)
        out.append(
            {
                "name": spec.name,
                "type": spec.type.value,
                "workers": by_state,
                "max_workers": spec.scaling.max_workers,
                "queued": stats.queued,
                "in_flight": stats.in_flight,
                "series": ctx.console.series(spec.name, now),
            }
        )
    return json_response({"endpoints": out, "now": now})


@router.get("/v1/console/endpoints/{endpoint}")
async def endpoint_detail(request: Request, endpoint: str) -> Response:
    ctx = _client_ctx(request)
    spec = ctx.catalog.get(endpoint)
    if spec is None:
        raise ApiError(404, f"endpoint {endpoint!r} not found")
    stats = await ctx.queue.stats(endpoint)
    control = await _control_endpoint(ctx, endpoint)
    jobs = []
    for job_id in ctx.console.recent(endpoint):
        job = await ctx.store.get(job_id)
        if job is not None:
            jobs.append(await _job_row(ctx, job))
    return json_response(
        {
            "name": endpoint,
            "type": spec.type.value,
            "scaling": spec.scaling.model_dump(mode="json"),
            "queued": stats.queued,
            "in_flight": stats.in_flight,
            "oldest_wait_s": stats.oldest_age_s,
            "workers": await _workers(ctx, endpoint),
            "exited": [exit_view(r, time.time()) for r in await recent_exits(ctx.store, endpoint)],
            "waiting": await waiting_reason(ctx.store, endpoint) if stats.queued else None,
            "trouble": control.get("trouble"),
            "history": control.get("history", []),
            "jobs": jobs,
            "series": ctx.console.series(endpoint, time.time()),
        }
    )


async def _job_row(ctx: GatewayContext, job: JobRecord) -> dict[str, Any]:
    view = job.client_view()
    row = {
        "id": job.id,
        "status": job.status.value,
        "created_at": job.created_at,
        "delay_ms": view.get("delayTime"),
        "execution_ms": view.get("executionTime"),
        "retries": job.retries,
        "worker_id": job.worker_id,
    }
    if job.status is JobStatus.IN_QUEUE:
        row["waiting"] = await waiting_reason(ctx.store, job.endpoint)
    return row


@router.get("/v1/console/jobs/{endpoint}/{job_id}")
async def job_detail(request: Request, endpoint: str, job_id: str) -> Response:
    ctx = _client_ctx(request)
    spec = ctx.catalog.get(endpoint)
    if spec is None:
        raise ApiError(404, f"endpoint {endpoint!r} not found")
    stored = await ctx.store.get(job_id)
    if stored is None or stored.endpoint != endpoint:
        raise ApiError(404, f"job {job_id!r} not found on endpoint {endpoint!r} (it may have expired)")
    job = await ctx.jobs.resolved(stored)
    from skiff_core.payloads.base import PayloadMissing, dereference

    try:
        job_input = await dereference(ctx.jobs.payloads, job.input)
    except PayloadMissing:
        job_input = None
    body = {
        **(await _job_row(ctx, job)),
        "input": job_input,
        "output": job.output,
        "error": job.error,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
        "stream": await ctx.store.read_stream(job_id, 0),
        "logs": _log_lines(ctx.settings.state_dir, endpoint, job),
    }
    return json_response(body)


def _log_lines(state_dir: Path, endpoint: str, job: JobRecord) -> list[str]:
    """The lines of the job's worker's output that name the job (embedded mode keeps each
    worker's output in <state_dir>/logs/<endpoint>/<worker>.log; in a cluster, `skiff logs`)."""
    if not job.worker_id:
        return []
    path = state_dir / "logs" / endpoint / f"{job.worker_id}.log"
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if job.id in line][-200:]
