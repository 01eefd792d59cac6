"""The client API, with Runpod v2's paths and shapes: /v2/{endpoint}/run, runsync, status, ..."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from skiff_core.jobs import JobStatus, WorkerRecord, WorkerState
from skiff_core.spec import EndpointSpec, EndpointType
from skiff_gateway import job_log, waiting
from skiff_gateway.auth import require_client
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, json_response, parse_json, read_body
from skiff_gateway.routing import RouteTable

router = RouteTable()

MAX_RUNSYNC_WAIT_MS = 300_000  # Runpod caps ?wait= at 5 minutes


def _ctx(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


def client_endpoint(request: Request, endpoint: str) -> tuple[GatewayContext, EndpointSpec]:
    """Checks the client key, then that the endpoint exists and takes jobs."""
    ctx = _ctx(request)
    require_client(ctx, request)
    spec = ctx.catalog.get(endpoint)
    if spec is None:
        raise ApiError(
            404,
            f"endpoint {endpoint!r} not found; known endpoints: {', '.join(ctx.catalog.names()) or 'none'}",
        )
    if spec.type is EndpointType.LOAD_BALANCER:
        raise ApiError(
            400, f"endpoint {endpoint!r} is a load_balancer endpoint: send requests to /lb/{endpoint}/<path>"
        )
    return ctx, spec


def _wait_ms(request: Request, default_s: float) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return default_s
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "wait must be an integer number of milliseconds") from None
    if value < 0 or value > MAX_RUNSYNC_WAIT_MS:
        raise ApiError(400, f"wait must be between 0 and {MAX_RUNSYNC_WAIT_MS} milliseconds")
    return value / 1000.0


@router.post("/v2/{endpoint}/run")
async def run(request: Request, endpoint: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    body = parse_json(await read_body(request, ctx.settings.max_run_body_bytes))
    rid = job_log.request_id(request)
    job = await ctx.jobs.submit(spec, body, sync=False, request_id=rid, traceparent=request.headers.get("traceparent"))
    return json_response({"id": job.id, "status": job.status.value}, headers={job_log.HEADER: rid})


@router.post("/v2/{endpoint}/runsync")
async def runsync(request: Request, endpoint: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    wait = _wait_ms(request, ctx.settings.runsync_wait_s)
    body = parse_json(await read_body(request, ctx.settings.max_runsync_body_bytes))
    rid = job_log.request_id(request)
    job = await ctx.jobs.submit(spec, body, sync=True, request_id=rid, traceparent=request.headers.get("traceparent"))
    final = await ctx.jobs.wait_final(job.id, wait, fresh=job)
    return json_response((final or job).client_view(), headers={job_log.HEADER: rid})


@router.route("/v2/{endpoint}/status/{job_id}", ["GET", "POST"])
async def status(request: Request, endpoint: str, job_id: str) -> Response:
    if (removed := await waiting.removed_endpoint_view(_ctx(request), request, endpoint, job_id)) is not None:
        return json_response(removed)
    ctx, spec = client_endpoint(request, endpoint)
    job = await ctx.jobs.get(spec, job_id)
    if not job.status.final and "wait" in request.query_params:
        job = await ctx.jobs.wait_final(job_id, _wait_ms(request, 0)) or job
    return json_response(await waiting.client_view(ctx.store, job))


@router.route("/v2/{endpoint}/status-sync/{job_id}", ["GET", "POST"])
async def status_sync(request: Request, endpoint: str, job_id: str) -> Response:
    """Runpod's /status-sync (what runpod-sdk's runSync and statusSync call): wait up to `wait` ms
    (bounded like /runsync; /runsync's default when absent) for a final state, then answer like
    /status."""
    ctx, spec = client_endpoint(request, endpoint)
    wait = _wait_ms(request, ctx.settings.runsync_wait_s)
    job = await ctx.jobs.get(spec, job_id)
    if not job.status.final:
        job = await ctx.jobs.wait_final(job_id, wait) or job
    return json_response(job.client_view())


@router.route("/v2/{endpoint}/stream/{job_id}", ["GET", "POST"])
async def stream(request: Request, endpoint: str, job_id: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    job, items = await ctx.jobs.next_stream_items(spec, job_id, _wait_ms(request, 0))
    body = {"id": job.id, "status": job.status.value, "stream": items}
    if job.status.final and job.error is not None:
        body["error"] = job.error
    return json_response(body)


@router.post("/v2/{endpoint}/cancel/{job_id}")
async def cancel(request: Request, endpoint: str, job_id: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    job = await ctx.jobs.cancel(spec, job_id)
    return json_response({"id": job.id, "status": job.status.value})


@router.post("/v2/{endpoint}/retry/{job_id}")
async def retry(request: Request, endpoint: str, job_id: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    job = await ctx.jobs.retry(spec, job_id)
    return json_response({"id": job.id, "status": job.status.value})


@router.post("/v2/{endpoint}/purge-queue")
async def purge_queue(request: Request, endpoint: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    removed = await ctx.jobs.purge(spec)
    return json_response({"removed": removed, "status": "completed"})


@router.get("/v2/{endpoint}/health")
async def health(request: Request, endpoint: str) -> Response:
    ctx, spec = client_endpoint(request, endpoint)
    counts = await ctx.store.counts(spec.name)
    workers = await current_workers(ctx, spec.name)
    by_state = {state.value: 0 for state in WorkerState}
    for worker in workers:
        by_state[worker.state.value] += 1
    cold = sorted(w.cold_start_s for w in workers if w.cold_start_s is not None)
    last = max(workers, key=lambda w: w.launched_at) if workers else None
    parts = last.cold_start_parts() if last is not None else None
    return json_response(
        {
            "jobs": {
                "completed": counts[JobStatus.COMPLETED],
                "failed": counts[JobStatus.FAILED] + counts[JobStatus.TIMED_OUT],
                "cancelled": counts[JobStatus.CANCELLED],
                "inProgress": counts[JobStatus.IN_PROGRESS],
                "inQueue": counts[JobStatus.IN_QUEUE],
                "retried": await ctx.store.retried_count(spec.name),
            },
            # Runpod's keys (idle, initializing, ready, running, throttled, unhealthy) and Skiff's
            # draining. ready: has made its first job-take and is not draining (idle + running).
            # throttled: always 0, as Skiff holds no started worker back; a worker the
            # orchestrator cannot place yet is no worker yet (`skiff status` shows why).
            "workers": {**by_state, "ready": by_state["idle"] + by_state["running"], "throttled": 0},
            # Skiff's own: webhooks this replica abandoned after every retry.
            "webhooks": {"givenUp": ctx.webhooks.given_up[spec.name]},
            "coldStartMs": {
                "count": len(cold),
                "last": _ms(last.cold_start_s) if last is not None else None,
                "p50": _ms(cold[len(cold) // 2]) if cold else None,
                "max": _ms(cold[-1]) if cold else None,
                # Skiff's own: `last` in parts (skiff_core.jobs.ColdStartParts), null where unseen.
                "parts": {
                    "placement": _ms(parts.placement_s) if parts else None,
                    "pull": _ms(parts.pull_s) if parts else None,
                    "startToTake": _ms(parts.start_to_take_s) if parts else None,
                },
            },
        }
    )


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


async def current_workers(ctx: GatewayContext, endpoint: str) -> list[WorkerRecord]:
    """The registry as stored (all replicas), overlaid with this replica's fresher view."""
    merged = {w.id: w for w in await ctx.store.list_workers(endpoint)}
    for worker in ctx.workers.local():
        if worker.endpoint == endpoint:
            merged[worker.id] = worker
    return [w for w in merged.values() if w.state is not WorkerState.UNHEALTHY or w.jobs_in_progress]
