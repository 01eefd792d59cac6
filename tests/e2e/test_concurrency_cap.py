"""`concurrency = N`: a worker that asks for 8 jobs at a time never holds more than N.

The worker counts what it runs at once itself; /health is sampled meanwhile too. The same worker
on an endpoint without the cap runs more than 2 at once, so the cap is what holds it back."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.support.stack import SkiffProcess, endpoint_hcl

WORKER = "tests/workers/runpod_greedy.py"
JOBS = 16


def _flood(stack: SkiffProcess, endpoint: str) -> tuple[int, int]:
    """Submit JOBS jobs, sample the endpoint's running jobs until all are done: (worker's own
    peak, highest sampled in progress)."""
    sampled = 0
    with stack.client() as client:
        ids = [client.post(f"/v2/{endpoint}/run", json={"input": {"sleep": 0.4}}).json()["id"] for _ in range(JOBS)]
        outputs: dict[str, dict[str, int]] = {}
        deadline = time.monotonic() + 120
        while len(outputs) < JOBS and time.monotonic() < deadline:
            health = client.get(f"/v2/{endpoint}/health").json()
            sampled = max(sampled, health["jobs"]["inProgress"])
            for job_id in ids:
                if job_id not in outputs:
                    status = client.get(f"/v2/{endpoint}/status/{job_id}").json()
                    if status["status"] == "COMPLETED":
                        outputs[job_id] = status["output"]
                    assert status["status"] in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"), status
            time.sleep(0.05)
    assert len(outputs) == JOBS, f"{len(outputs)}/{JOBS} jobs done:\n{stack.output()[-5000:]}"
    return max(o["peak"] for o in outputs.values()), sampled


def test_a_worker_asking_for_8_holds_at_most_concurrency(skiff_stack: Callable[..., SkiffProcess]) -> None:
    one_worker = {"min_workers": 1, "max_workers": 1}
    stack = skiff_stack(
        {
            "capped": endpoint_hcl("capped", WORKER, concurrency=2, scaling=one_worker),
            "greedy": endpoint_hcl("greedy", WORKER, scaling=one_worker),
        },
        # The runpod SDK imports slowly on a busy machine: its first ping may come late.
        {"SKIFF_WORKER_LOST_AFTER_S": "30"},
    )
    stack.wait_ready_workers("capped")
    stack.wait_ready_workers("greedy")

    peak, sampled = _flood(stack, "capped")
    assert peak == 2, f"the capped worker ran {peak} jobs at once"
    assert 1 <= sampled <= 2

    uncapped_peak, _ = _flood(stack, "greedy")
    assert uncapped_peak > 2, "without the cap the worker should take more than 2 (it asks for 8)"
