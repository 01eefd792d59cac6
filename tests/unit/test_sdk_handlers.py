"""Handlers of every kind become exactly the result bodies the official runpod SDK produces."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from runpod.serverless.modules import rp_job

from skiff.worker.handlers import error_report, is_generator, run_job, run_job_generator, run_to_result

JOB = {"id": "job-1", "input": {"n": 3}}


def _runpod_result(handler: Any) -> dict[str, Any]:
    return asyncio.run(rp_job.run_job(handler, dict(JOB)))


RETURNS: list[Any] = [
    {"a": 1},
    [1, 2],
    "text",
    None,
    True,
    0,
    {},
    {"error": "bad", "x": 1},
    {"error": "bad"},
    {"refresh_worker": True, "y": 2},
    {"refresh_worker": False},
]


@pytest.mark.parametrize("value", RETURNS, ids=[json.dumps(v) for v in RETURNS])
async def test_sync_and_async_returns_match_runpod(value: Any) -> None:
    def sync_handler(job: dict[str, Any]) -> Any:
        return json.loads(json.dumps(value))  # a fresh copy: runpod mutates dicts it gets back

    async def async_handler(job: dict[str, Any]) -> Any:
        return json.loads(json.dumps(value))

    expected = await asyncio.to_thread(_runpod_result, sync_handler)
    assert await run_job(sync_handler, dict(JOB)) == expected
    assert await run_job(async_handler, dict(JOB)) == expected


async def test_handler_return_value_is_not_mutated() -> None:
    returned = {"error": "bad", "refresh_worker": True, "x": 1}
    assert await run_job(lambda job: returned, dict(JOB)) == {"output": {"x": 1}, "error": "bad", "stopPod": True}
    assert returned == {"error": "bad", "refresh_worker": True, "x": 1}


async def test_raising_handler_matches_runpods_report() -> None:
    def boom(job: dict[str, Any]) -> Any:
        raise KeyError("missing")

    ours = json.loads((await run_job(boom, dict(JOB)))["error"])
    theirs = json.loads((await asyncio.to_thread(_runpod_result, boom))["error"])
    assert set(ours) == set(theirs)
    for key in ("error_type", "error_message", "hostname", "worker_id"):
        assert ours[key] == theirs[key]
    assert "KeyError: 'missing'" in ours["error_traceback"]
    assert json.loads(error_report(ValueError("x")))["error_type"] == "<class 'ValueError'>"


def gen_handler(job: dict[str, Any]) -> Iterator[Any]:
    yield from range(job["input"]["n"])


async def agen_handler(job: dict[str, Any]) -> AsyncIterator[Any]:
    for i in range(job["input"]["n"]):
        yield {"i": i}


def failing_gen(job: dict[str, Any]) -> Iterator[Any]:
    yield 1
    raise RuntimeError("mid-stream")


@pytest.mark.parametrize("handler", [gen_handler, agen_handler, failing_gen])
async def test_generator_partials_match_runpod(handler: Any) -> None:
    async def collect(source: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        async for part in source:
            if "error" in part:
                part = {"error": part["error"].split("\ntraceback:")[0]}
            out.append(part)
        return out

    theirs = await collect(rp_job.run_job_generator(handler, dict(JOB)))
    ours = await collect(run_job_generator(handler, dict(JOB)))
    assert ours == theirs
    assert ours  # something was produced


class CallableGen:
    def __call__(self, job: dict[str, Any]) -> Iterator[int]:
        yield 1


def test_generator_detection_covers_callable_objects() -> None:
    assert is_generator(gen_handler) and is_generator(agen_handler) and is_generator(CallableGen())
    assert not is_generator(lambda job: 1)


async def test_run_to_result_aggregates_and_stops_on_error_chunk() -> None:
    assert await run_to_result(gen_handler, dict(JOB)) == {"output": [0, 1, 2]}

    def error_chunk(job: dict[str, Any]) -> Iterator[Any]:
        yield "ok"
        yield {"error": "model crashed"}
        yield "never"

    assert await run_to_result(error_chunk, dict(JOB)) == {"error": "model crashed"}


async def test_sync_handler_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def handler(job: dict[str, Any]) -> str:
        seen.append(threading.get_ident())
        return "ok"

    assert await run_job(handler, dict(JOB)) == {"output": "ok"}
    assert seen and seen[0] != loop_thread


async def test_stopped_sync_handler_keeps_its_slot_until_it_returns() -> None:
    release = threading.Event()
    finished = threading.Event()

    def handler(job: dict[str, Any]) -> str:
        release.wait(10)
        finished.set()
        return "late"

    task = asyncio.create_task(run_job(handler, dict(JOB)))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.sleep(0.2)
    assert not task.done(), "the job released its slot while its handler was still running"
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


async def test_stopped_async_handler_is_interrupted() -> None:
    reached_end = False

    async def handler(job: dict[str, Any]) -> str:
        nonlocal reached_end
        await asyncio.sleep(30)
        reached_end = True
        return "never"

    task = asyncio.create_task(run_job(handler, dict(JOB)))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not reached_end
