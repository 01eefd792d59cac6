"""Run a user handler on one job and turn what it does into the worker protocol's result bodies.

Result shapes mirror runpod/serverless/modules/rp_job.py (SDK 1.12) `run_job` and
`run_job_generator`, so the gateway sees the same bodies from a Skiff worker as from a runpod one.

One deliberate difference: runpod calls a *sync* handler (and `next()` on a sync generator)
directly on its event loop, which freezes the stop channel for the whole job. Skiff runs them in a
thread, so a job can be stopped and `concurrency_modifier` really runs sync handlers in parallel.
A stopped sync handler cannot be interrupted; its job slot stays taken until it returns, so a
cancelled job never overlaps the next one on the same GPU.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import json
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from skiff._version import SDK_VERSION
from skiff.worker.log import log
from skiff.worker.trace import joined

Job = dict[str, Any]
Result = dict[str, Any]
Handler = Callable[[Job], Any]
T = TypeVar("T")

_END = object()  # sentinel: StopIteration cannot cross a Future


def _call_target(handler: Handler) -> Callable[..., Any]:
    # Instances with `__call__` count too (runpod only inspects the object itself).
    if inspect.isfunction(handler) or inspect.ismethod(handler):
        return handler
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the bound method, not callable()
    return call if call is not None else handler


def is_generator(handler: Handler) -> bool:
    target = _call_target(handler)
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)


def is_async(handler: Handler) -> bool:
    target = _call_target(handler)
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


async def _in_thread(fn: Callable[[], T], executor: concurrent.futures.Executor | None) -> T:
    """Run `fn` in a thread; if the job is stopped meanwhile, wait for the thread before re-raising.

    Threads cannot be killed, so holding the cancellation until the thread ends is what keeps
    the job slot honest (see the module docstring). A second cancel gives up waiting.
    """
    loop = asyncio.get_running_loop()
    # The caller's context (a job's trace context, skiff.worker.trace) goes with it into the thread.
    future = loop.run_in_executor(executor, contextvars.copy_context().run, fn)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def error_report(err: BaseException, worker_id: str = "unknown", hostname: str = "unknown") -> str:
    """The JSON string runpod sends as `error` when a handler raises (rp_job.run_job).

    runpod reads `worker_id` and `hostname` from the environment; here the caller passes them from
    the worker's config, so the report names the worker id the gateway knows.
    """
    info = {
        "error_type": str(type(err)),
        "error_message": str(err),
        "error_traceback": "".join(traceback.format_exception(err)),
        "hostname": hostname,
        "worker_id": worker_id,
        "runpod_version": SDK_VERSION,
    }
    return json.dumps(info)


def shape_output(job_output: Any) -> Result:
    """Turn a handler's return value into a job-done body, as rp_job.run_job does.

    A dict return may carry `error` (the job fails with that error, output kept) and
    `refresh_worker` (the worker is replaced after the job: `stopPod`). An empty dict means no output.
    """
    result: Result = {}
    if isinstance(job_output, dict):
        body = dict(job_output)  # runpod pops from the user's dict; we leave it alone
        error = body.pop("error", None)
        refresh = body.pop("refresh_worker", None)
        result["output"] = body
        if error:
            result["error"] = error
        if refresh:
            result["stopPod"] = True
    else:
        result["output"] = job_output
    if result.get("output") == {}:
        result.pop("output")
    return result


async def run_job(
    handler: Handler,
    job: Job,
    executor: concurrent.futures.Executor | None = None,
    *,
    worker_id: str = "unknown",
    hostname: str = "unknown",
) -> Result:
    """Run a non-generator handler once; never raises except on cancellation.

    `worker_id` and `hostname` only go into the error report of a handler that raises.
    """
    job_id = log.bind(job)
    log.info("Started.", job_id)
    try:
        with joined(job):
            if is_async(handler):
                returned = handler(job)
            else:
                returned = await _in_thread(lambda: handler(job), executor)
            if inspect.isawaitable(returned):
                returned = await returned
        result = shape_output(returned)
    except Exception as err:
        log.error("Captured Handler Exception", job_id)
        report = error_report(err, worker_id, hostname)
        log.error(report, job_id)
        result = {"error": report}
    log.debug(f"run_job return: {result}", job_id)
    return result


async def _sync_chunks(gen: Any, executor: concurrent.futures.Executor | None) -> AsyncIterator[Any]:
    try:
        while True:
            chunk = await _in_thread(lambda: next(gen, _END), executor)
            if chunk is _END:
                return
            yield chunk
    finally:
        close = getattr(gen, "close", None)
        if close is not None:
            # ValueError: still running in its thread after a hard cancel.
            with contextlib.suppress(ValueError, RuntimeError):
                close()


async def run_job_generator(
    handler: Handler, job: Job, executor: concurrent.futures.Executor | None = None
) -> AsyncIterator[Result]:
    """Yield `{"output": chunk}` per chunk, or one `{"error": ...}` if the handler raises.

    The error text is runpod's exactly: `handler: <message> \\ntraceback: <traceback>`.
    """
    job_id = log.bind(job)
    log.info("Started.", job_id)
    try:
        produced = handler(job) if is_async(handler) else await _in_thread(lambda: handler(job), executor)
        chunks = produced if inspect.isasyncgen(produced) else _sync_chunks(produced, executor)
        async for chunk in chunks:
            yield {"output": chunk}
    except Exception as err:
        log.error(str(err), job_id)
        yield {"error": f"handler: {err} \ntraceback: {''.join(traceback.format_exception(err))}"}
    finally:
        log.info("Finished running generator.", job_id)


async def run_streaming(
    handler: Handler,
    job: Job,
    aggregate: bool,
    send_chunk: Callable[[Result], Awaitable[None]],
    executor: concurrent.futures.Executor | None = None,
) -> Result:
    """Drive a generator handler: send each chunk, return the final job-done body.

    Mirrors rp_job.handle_job: a chunk that is a dict with a truthy `error` ends the job as that
    error; the final body is `{"output": [all chunks]}` with `return_aggregate_stream`, else
    `{"output": []}` (runpod sends the empty list, not an absent output).
    """
    final: Result = {"output": []}
    async for partial in run_job_generator(handler, job, executor):
        out = partial.get("output")
        if isinstance(out, dict) and out.get("error"):
            partial = {"error": str(out["error"])}
        if partial.get("error"):
            final = partial
            break
        if aggregate:
            final["output"].append(out)
        await send_chunk(partial)
    return final


async def run_to_result(
    handler: Handler,
    job: Job,
    aggregate: bool = True,
    executor: concurrent.futures.Executor | None = None,
    *,
    worker_id: str = "unknown",
    hostname: str = "unknown",
) -> Result:
    """One job, any handler kind, chunks collected: what local test mode prints."""
    if not is_generator(handler):
        return await run_job(handler, job, executor, worker_id=worker_id, hostname=hostname)

    async def ignore(_: Result) -> None:
        return None

    return await run_streaming(handler, job, aggregate, ignore, executor)
