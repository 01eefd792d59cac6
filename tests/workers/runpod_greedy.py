"""A runpod worker that asks for 8 jobs at a time (concurrency_modifier) and reports the most it
ever ran at once, counted inside the worker itself."""

import asyncio

import runpod

in_flight = 0
peak = 0


async def handler(job):
    global in_flight, peak
    in_flight += 1
    peak = max(peak, in_flight)
    try:
        await asyncio.sleep(float(job["input"].get("sleep", 0.5)))
    finally:
        in_flight -= 1
    return {"peak": peak}


runpod.serverless.start({"handler": handler, "concurrency_modifier": lambda current: 8})
