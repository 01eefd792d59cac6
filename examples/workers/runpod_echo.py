"""Echo worker written for Runpod with the official ``runpod`` package; Skiff runs it unchanged.

It returns the job's input. Two inputs change what it does, as in ``echo.py``:

- ``{"sleep": seconds, ...}`` sleeps that long before answering (cancel, timeout, crash tests);
- ``{"fail": "message", ...}`` raises ``RuntimeError("message")``, so the job ends FAILED and its error
  carries that message (after the sleep, when both are given).

Run it locally without a gateway:
``python examples/workers/runpod_echo.py --test_input '{"input": {"x": 1}}'``.
"""

import time

import runpod


def handler(job):
    job_input = job["input"]
    if isinstance(job_input, dict):
        if "sleep" in job_input:
            time.sleep(float(job_input["sleep"]))
        if "fail" in job_input:
            raise RuntimeError(str(job_input["fail"]))
    return job_input


runpod.serverless.start({"handler": handler})
