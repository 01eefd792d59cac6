"""Test worker (official runpod SDK): a generator handler, streamed chunk by chunk.

Input: {"words": [...], "delay": s}; yields each word after `delay` seconds; {"fail": msg}
raises after the words.
"""

import time

import runpod


def handler(job):
    job_input = job["input"]
    for word in job_input.get("words", []):
        time.sleep(float(job_input.get("delay", 0)))
        yield word
    if "fail" in job_input:
        raise RuntimeError(str(job_input["fail"]))


runpod.serverless.start({"handler": handler, "return_aggregate_stream": True})
