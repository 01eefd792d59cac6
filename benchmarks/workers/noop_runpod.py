"""No-op worker for benchmarks/gateway.py, written with the official `runpod` SDK: returns its input.

Under Skiff it serves jobs like any Runpod worker; run by hand with
`--rp_serve_api --rp_api_port N --rp_api_host 127.0.0.1` it is the runpod SDK's own local API
server, the latency baseline. NOOP_CONCURRENCY (default 1) as in noop_skiff.py.
"""

import os
from typing import Any

import runpod

CONCURRENCY = max(1, int(os.environ.get("NOOP_CONCURRENCY", "1")))


def handler(job: dict[str, Any]) -> Any:
    return job["input"]


def concurrency(_current: int) -> int:
    return CONCURRENCY


runpod.serverless.start({"handler": handler, "concurrency_modifier": concurrency})
