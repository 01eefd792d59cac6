"""Compatibility promise 2 for streaming: a generator handler written with `import runpod`."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.stack import SkiffProcess, endpoint_hcl


def test_runpod_generator_worker_streams_and_aggregates(skiff_stack: Callable[..., SkiffProcess]) -> None:
    stack = skiff_stack({"gen": endpoint_hcl("gen", "tests/workers/runpod_stream.py", scaling={"min_workers": 1})})
    stack.wait_ready_workers("gen")
    with stack.client() as client:
        job = client.post("/v2/gen/run", json={"input": {"words": ["alpha", "beta", "gamma"], "delay": 0.2}}).json()
        chunks: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = client.get(f"/v2/gen/stream/{job['id']}").json()
            chunks.extend(item["output"] for item in body["stream"])
            if body["status"] == "COMPLETED" and not body["stream"]:
                break
            time.sleep(0.1)
        assert chunks == ["alpha", "beta", "gamma"]
        done = client.get(f"/v2/gen/status/{job['id']}").json()
        assert done["status"] == "COMPLETED" and done["output"] == ["alpha", "beta", "gamma"]

        failed = client.post("/v2/gen/runsync", json={"input": {"words": ["one"], "fail": "broke mid-stream"}}).json()
        assert failed["status"] == "FAILED"
        assert "broke mid-stream" in str(failed["error"])
