"""The worker API, exactly as the official runpod SDK's worker loop calls it.

See runpod/serverless/modules/rp_job.py, rp_http.py and rp_ping.py (runpod 1.12): job-take is a
long poll answering 204 when there is no work; job-done and job-stream bodies are JSON sent as
application/x-www-form-urlencoded with `&isStream=` appended; job-stop long-polls for
{"jobsToStop": [...]}; ping carries the in-progress job ids as `job_id=a,b`.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from skiff_core.spec import EndpointSpec
from skiff_gateway import concurrency
from skiff_gateway.auth import require_worker
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, json_response, parse_json, read_body, unless_disconnected
from skiff_gateway.routing import RouteTable

router = RouteTable()
T = TypeVar("T")

MAX_BATCH = 64
# A worker's result may be as large as a /runsync answer.
MAX_RESULT_BYTES = 20 * 1024 * 1024
# Runpod's limit on one streamed chunk.
MAX_STREAM_CHUNK_BYTES = 1024 * 1024
NO_CONTENT = 204


def worker_endpoint(request: Request, endpoint: str) -> tuple[GatewayContext, EndpointSpec]:
    ctx: GatewayContext = request.app.state.ctx
    require_worker(ctx, request, endpoint)
    spec = ctx.catalog.get(endpoint)
    if spec is None:
        raise ApiError(404, f"endpoint {endpoint!r} not found")
    return ctx, spec


def _take_wait(ctx: GatewayContext, request: Request) -> float:
    # A worker that already holds a job (job_in_progress=1) is asking for more concurrency:
    # answer quickly so its loop can attend to the running job.
    if request.query_params.get("job_in_progress") == "1":
        return min(ctx.settings.take_wait_s, 1.0)
    return ctx.settings.take_wait_s


def _long_poll(request: Request, ctx: GatewayContext, worker_id: str, work: Awaitable[T]) -> Awaitable[T | None]:
    """A worker's long poll: ends early when the worker hangs up or is being stopped."""
    return unless_disconnected(request, work, ctx.workers.polls(worker_id))


@router.get("/v2/{endpoint}/job-take/{worker_id}")
async def job_take(request: Request, endpoint: str, worker_id: str) -> Response:
    ctx, spec = worker_endpoint(request, endpoint)
    jobs = await _long_poll(
        request, ctx, worker_id, concurrency.take(ctx, spec, worker_id, 1, _take_wait(ctx, request))
    )
    if not jobs:
        return Response(status_code=NO_CONTENT)
    return json_response(jobs[0])


@router.get("/v2/{endpoint}/job-take-batch/{worker_id}")
async def job_take_batch(request: Request, endpoint: str, worker_id: str) -> Response:
    ctx, spec = worker_endpoint(request, endpoint)
    raw = request.query_params.get("batch_size", "1")
    try:
        batch = max(1, min(MAX_BATCH, int(raw)))
    except ValueError:
        raise ApiError(400, "batch_size must be an integer") from None
    jobs = await _long_poll(
        request, ctx, worker_id, concurrency.take(ctx, spec, worker_id, batch, _take_wait(ctx, request))
    )
    if not jobs:
        return Response(status_code=NO_CONTENT)
    return json_response(jobs)


@router.post("/v2/{endpoint}/job-done/{worker_id}/{job_id}")
async def job_done(request: Request, endpoint: str, worker_id: str, job_id: str) -> Response:
    ctx, spec = worker_endpoint(request, endpoint)
    body = parse_json(await read_body(request, MAX_RESULT_BYTES), what="job result")
    await ctx.jobs.finish(spec, worker_id, job_id, body)
    return json_response({"status": "ok"})


@router.post("/v2/{endpoint}/job-stream/{worker_id}/{job_id}")
async def job_stream(request: Request, endpoint: str, worker_id: str, job_id: str) -> Response:
    ctx, spec = worker_endpoint(request, endpoint)
    body = parse_json(await read_body(request, MAX_STREAM_CHUNK_BYTES, what="stream chunk"), what="stream chunk")
    await ctx.jobs.add_stream(spec, worker_id, job_id, body)
    return json_response({"status": "ok"})


@router.get("/v2/{endpoint}/job-stop/{worker_id}")
async def job_stop(request: Request, endpoint: str, worker_id: str) -> Response:
    ctx, _spec = worker_endpoint(request, endpoint)
    job_ids = await _long_poll(request, ctx, worker_id, ctx.store.take_stops(worker_id, ctx.settings.take_wait_s))
    if not job_ids:
        return Response(status_code=NO_CONTENT)
    return json_response({"jobsToStop": job_ids})


@router.get("/v2/{endpoint}/ping/{worker_id}")
async def ping(request: Request, endpoint: str, worker_id: str) -> Response:
    ctx, spec = worker_endpoint(request, endpoint)
    raw = ",".join(request.query_params.getlist("job_id"))
    job_ids = [j for j in raw.split(",") if j]
    await ctx.jobs.ping(spec, worker_id, job_ids)
    return json_response({"status": "ok"})
