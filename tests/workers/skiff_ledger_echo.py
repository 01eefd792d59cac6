"""Test worker (Skiff SDK): echoes its input after `sleep` s, and appends "<job id>\n" to the file
named by $LEDGER each time it runs a job, so a test can count how often each job ran."""

import asyncio
import os

import skiff.serverless

LEDGER = os.environ["LEDGER"]


async def handler(job):
    # One short O_APPEND write per run: lines from several workers never interleave.
    fd = os.open(LEDGER, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job['id']}\n".encode())
    finally:
        os.close(fd)
    await asyncio.sleep(float(job["input"].get("sleep", 0)))
    return job["input"]


skiff.serverless.start({"handler": handler})
