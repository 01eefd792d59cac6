"""Test worker (Skiff SDK): an async echo handler, so job-stop can cancel it mid-sleep.

Input: {"sleep": s} awaits s seconds first; {"fail": msg} raises; {"refresh": true} asks for the
worker to be replaced after the job (its output names the process: "pid"); {"pid": true} answers
{"pid": <the worker's process id>}; anything else is echoed back.
"""

import asyncio
import os

import skiff.serverless


async def handler(job):
    job_input = job["input"]
    if isinstance(job_input, dict):
        if "sleep" in job_input:
            await asyncio.sleep(float(job_input["sleep"]))
        if "fail" in job_input:
            raise RuntimeError(str(job_input["fail"]))
        if job_input.get("refresh"):
            return {"refresh_worker": True, "echo": job_input, "pid": os.getpid()}
        if job_input.get("pid"):
            return {"pid": os.getpid()}
    return job_input


skiff.serverless.start({"handler": handler})
