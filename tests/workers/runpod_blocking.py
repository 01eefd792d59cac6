"""Test worker (official runpod SDK) whose handler blocks and ignores job-stop: time.sleep(input["sleep"]).

The SDK's heartbeat runs in its own process, so the worker keeps pinging with the job id while
the handler is stuck: what the controller's execution-timeout kill is for.
"""

import time

import runpod


def handler(job):
    time.sleep(float(job["input"].get("sleep", 0)))
    return {"slept": job["input"].get("sleep", 0)}


runpod.serverless.start({"handler": handler})
