"""No-op worker for benchmarks/gateway.py, written with the Skiff SDK: returns its input.

NOOP_CONCURRENCY (default 1) is the number of jobs it holds at once; above 1 the SDK asks the
gateway for several jobs per job-take (job-take-batch), as the runpod SDK does.
"""

import os
from typing import Any

import skiff.serverless

CONCURRENCY = max(1, int(os.environ.get("NOOP_CONCURRENCY", "1")))


def handler(job: dict[str, Any]) -> Any:
    return job["input"]


def concurrency(_current: int) -> int:
    return CONCURRENCY


skiff.serverless.start({"handler": handler, "concurrency_modifier": concurrency})
