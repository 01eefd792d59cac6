"""Test worker (Skiff SDK): spends SLOW_START_S seconds before it first calls the gateway, as a
worker importing a large model at module level does; then echoes its input."""

import os
import time

import skiff.serverless

time.sleep(float(os.environ.get("SLOW_START_S", "8")))


async def handler(job):
    return job["input"]


skiff.serverless.start({"handler": handler})
