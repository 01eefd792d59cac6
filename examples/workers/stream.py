"""Streaming worker (Skiff SDK): a generator handler whose chunks are streamed as it yields them.

Input (all optional):

- ``{"text": "a few words"}`` yields the words one by one;
- otherwise ``{"n": 3}`` yields ``"chunk 0"``, ``"chunk 1"``, ``"chunk 2"`` (default n comes from
  the endpoint's ``STREAM_DEFAULT_CHUNKS`` env, else 5);
- ``{"delay": seconds}`` sleeps before each chunk, so a client can watch ``/stream/{id}`` fill up;
- ``{"fail": "message"}`` raises ``RuntimeError("message")`` after the last chunk.

``return_aggregate_stream`` makes the job's final output the list of all chunks, so ``/run``
plus ``/status`` (or ``/runsync``) see the whole result too.

Run it locally: ``python examples/workers/stream.py --test_input '{"input": {"text": "a b c"}}'``.
"""

import os
import time

import skiff.serverless


def handler(job):
    job_input = job["input"] if isinstance(job["input"], dict) else {}
    delay = float(job_input.get("delay", 0))
    if "text" in job_input:
        chunks = str(job_input["text"]).split()
    else:
        count = int(job_input.get("n", os.environ.get("STREAM_DEFAULT_CHUNKS", 5)))
        chunks = [f"chunk {i}" for i in range(count)]
    for chunk in chunks:
        if delay:
            time.sleep(delay)
        yield chunk
    if "fail" in job_input:
        raise RuntimeError(str(job_input["fail"]))


skiff.serverless.start({"handler": handler, "return_aggregate_stream": True})
