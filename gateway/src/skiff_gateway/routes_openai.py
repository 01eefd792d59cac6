"""OpenAI-compatible routes on queue endpoints, as Runpod serves them: /v2/{endpoint}/openai/v1/...

Each request becomes an ordinary job (same key, visible through /status) whose input is
`{"openai_route": "/v1/chat/completions", "openai_input": <the request body>}`, or only
`{"openai_route": "/v1/models"}` for a GET: what runpod-workers/worker-vllm's handler reads
(src/handler.py, `_normalize_job_input`).

Non-streamed, the answer is the worker's OpenAI object: the job's output, or its first item when
the handler yields (the runpod SDK aggregates yielded items into a list). With `"stream": true`
the answer is `text/event-stream`, passing through each stream item as it arrives: worker-vllm
yields the raw SSE text it reads from vLLM (`data: {...}\\n\\n` ... `data: [DONE]\\n\\n`); an item
that is not text is sent as one `data:` event of its JSON. An error from the worker becomes an
HTTP error status with OpenAI's error shape, or, once a stream has begun, a last `data:` event
carrying that error object.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.spec import EndpointSpec
from skiff_gateway.context import GatewayContext
from skiff_gateway.http import ApiError, json_response, openai_error, parse_json, read_body, unless_disconnected
from skiff_gateway.routes_client import MAX_RUNSYNC_WAIT_MS, client_endpoint
from skiff_gateway.routing import RouteTable

router = RouteTable()
T = TypeVar("T")

# How long a request waits for its answer (non-streamed) or its first chunk (streamed), as
# /runsync's longest wait; past it, 504 naming the job, which goes on (see /status/{id}).
OPENAI_WAIT_S = MAX_RUNSYNC_WAIT_MS / 1000.0
# A streamed answer re-checks its job this often while no chunk comes (the job store wakes it
# at once on a new chunk or a final state).
STREAM_POLL_S = 10.0
# Names the job behind an answer, for /status/{id}.
JOB_ID_HEADER = "X-Skiff-Job-Id"
# A worker's error string longer than this is not parsed as a Python literal.
MAX_ERROR_PARSE_CHARS = 64 * 1024
_background: set[asyncio.Task[Any]] = set()


@router.post("/v2/{endpoint}/openai/v1/chat/completions")
async def chat_completions(request: Request, endpoint: str) -> Response:
    return await _serve(request, endpoint, "/v1/chat/completions", with_body=True)


@router.post("/v2/{endpoint}/openai/v1/completions")
async def completions(request: Request, endpoint: str) -> Response:
    return await _serve(request, endpoint, "/v1/completions", with_body=True)


@router.get("/v2/{endpoint}/openai/v1/models")
async def models(request: Request, endpoint: str) -> Response:
    return await _serve(request, endpoint, "/v1/models", with_body=False)


async def _serve(request: Request, endpoint: str, route: str, *, with_body: bool) -> Response:
    try:
        ctx, spec = client_endpoint(request, endpoint)
        job_input: dict[str, Any] = {"openai_route": route}
        streamed = False
        if with_body:
            body = parse_json(await read_body(request, ctx.settings.max_runsync_body_bytes))
            if not isinstance(body, dict):
                raise ApiError(400, "request body must be a JSON object")
            job_input["openai_input"] = body
            streamed = body.get("stream") is True
        job = await ctx.jobs.submit(spec, {"input": job_input}, sync=True)
        if streamed:
            return await _stream(request, ctx, spec, job)
        return await _answer(request, ctx, spec, job)
    except ApiError as exc:
        return openai_error(exc.status, exc.message)


async def _answer(request: Request, ctx: GatewayContext, spec: EndpointSpec, job: JobRecord) -> Response:
    waited = await unless_disconnected(request, _boxed(ctx.jobs.wait_final(job.id, OPENAI_WAIT_S)))
    if waited is None:
        _cancel_later(ctx, spec, job.id)  # nobody is left to read the answer
        return Response(status_code=499)
    [final] = waited
    if final is None or not final.status.final:
        return _not_yet(job.id)
    if final.status is not JobStatus.COMPLETED:
        return _job_error(final)
    output = final.output
    if isinstance(output, list):
        output = output[0] if output else None
    if output is None:
        return openai_error(502, f"the worker returned no output (job {job.id})", "worker_error")
    if isinstance(output, dict) and "error" in output:
        return _error_object(output["error"])
    return json_response(output, headers={JOB_ID_HEADER: job.id})


async def _stream(request: Request, ctx: GatewayContext, spec: EndpointSpec, job: JobRecord) -> Response:
    # The status line goes out with the first byte: wait for a first chunk (or the end) before
    # choosing between 200 and an error.
    deadline = time.monotonic() + OPENAI_WAIT_S
    current, items = job, list[Any]()
    while not items and not current.status.final:
        left = deadline - time.monotonic()
        if left <= 0:
            return _not_yet(job.id)
        got = await unless_disconnected(request, ctx.jobs.next_stream_items(spec, job.id, min(left, STREAM_POLL_S)))
        if got is None:
            _cancel_later(ctx, spec, job.id)
            return Response(status_code=499)
        current, items = got
    if not items:
        if current.status is not JobStatus.COMPLETED:
            return _job_error(current)
        # A handler that returns instead of yielding: its output is the one chunk.
        output = (await ctx.jobs.resolved(current)).output
        items = [{"output": item} for item in (output if isinstance(output, list) else [output])]

    async def events() -> AsyncIterator[bytes]:
        nonlocal current, items
        ended = False
        try:
            while True:
                for item in items:
                    yield _sse(item)
                if current.status.final and not items:
                    break
                current, items = await ctx.jobs.next_stream_items(spec, job.id, STREAM_POLL_S)
            if current.status is not JobStatus.COMPLETED:
                _status, body = _error_body(current)
                yield b"data: " + orjson.dumps(body) + b"\n\n"
            ended = True
        finally:
            if not ended:  # the client left mid-stream: stop the work it asked for
                _cancel_later(ctx, spec, job.id)

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", JOB_ID_HEADER: job.id}
    )


async def _boxed(work: Awaitable[T]) -> list[T]:
    """`work`'s result in a list, so that a None it returns differs from unless_disconnected's."""
    return [await work]


def _sse(item: Any) -> bytes:
    value = item.get("output") if isinstance(item, dict) and "output" in item else item
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict) and "error" in value:
        _status, body = _error_shape(value["error"])
        return b"data: " + orjson.dumps(body) + b"\n\n"
    return b"data: " + orjson.dumps(value) + b"\n\n"


def _not_yet(job_id: str) -> Response:
    return openai_error(
        504,
        f"no answer within {OPENAI_WAIT_S:g}s; the job goes on: GET /status/{job_id} for its result",
        "timeout",
    )


def _job_error(job: JobRecord) -> Response:
    status, body = _error_body(job)
    return json_response(body, status)


def _error_body(job: JobRecord) -> tuple[int, dict[str, Any]]:
    if job.status is JobStatus.TIMED_OUT:
        return 504, _shape(f"job {job.id} timed out", "timeout", None)
    if job.status is JobStatus.CANCELLED:
        return 499, _shape(f"job {job.id} was cancelled", "cancelled", None)
    return _error_shape(job.error)


def _error_object(error: Any) -> Response:
    status, body = _error_shape(error)
    return json_response(body, status)


def _error_shape(error: Any) -> tuple[int, dict[str, Any]]:
    """OpenAI's error shape from what a worker reported. worker-vllm yields
    `{"error": {"message", "type", "code"}}`; the runpod SDK turns a yielded error into the
    job's error as `str()` of that object (a Python literal), and a handler's exception into
    JSON with `error_message` (rp_job.run_job, run_job_generator)."""
    parsed = _parse(error)
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        parsed = parsed["error"]
    if isinstance(parsed, dict) and ("message" in parsed or "error_message" in parsed):
        message = str(parsed.get("message", parsed.get("error_message")))
        kind = str(parsed.get("type") or parsed.get("error_type") or "worker_error")
        code = parsed.get("code")
    else:
        message, kind, code = str(error if error is not None else "the job failed"), "worker_error", None
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599 else 500
    return status, _shape(message, kind, code)


def _shape(message: str, kind: str, code: Any) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _parse(error: Any) -> Any:
    if not isinstance(error, str) or len(error) > MAX_ERROR_PARSE_CHARS:
        return error
    try:
        return orjson.loads(error)
    except orjson.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(error)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return error


def _cancel_later(ctx: GatewayContext, spec: EndpointSpec, job_id: str) -> None:
    # Not awaited where the request's task is being cancelled (a client that hung up).
    task = asyncio.get_running_loop().create_task(_cancel(ctx, spec, job_id))
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _cancel(ctx: GatewayContext, spec: EndpointSpec, job_id: str) -> None:
    with contextlib.suppress(ApiError):  # already gone
        await ctx.jobs.cancel(spec, job_id)
