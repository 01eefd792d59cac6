"""Test worker (Skiff SDK): answers which version of the endpoint ran the job.

Returns {"version": $VERSION, "worker": $RUNPOD_POD_ID, "input": ...} after sleeping input["sleep"] s.
"""

import asyncio
import os

import skiff.serverless


async def handler(job):
    job_input = job["input"]
    if isinstance(job_input, dict) and "sleep" in job_input:
        await asyncio.sleep(float(job_input["sleep"]))
    return {"version": os.environ.get("VERSION"), "worker": os.environ.get("RUNPOD_POD_ID"), "input": job_input}


skiff.serverless.start({"handler": handler})
