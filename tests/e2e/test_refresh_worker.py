"""refresh_worker / stopPod under `skiff up`: a worker that returns {"refresh_worker": true} is
replaced by a fresh process after the job, whether its SDK exits by itself (Skiff's) or only
sends `stopPod: true` with the result and leaves the restart to the platform (runpod's
rp_job.run_job). The cluster side is in test_cluster_nomad.py."""

from __future__ import annotations

import os

from tests.support.stack import SkiffProcess
from tests.support.wait import eventually


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_worker_that_asks_for_it_is_replaced_by_a_new_process(echo_stack: SkiffProcess) -> None:
    echo_stack.wait_ready_workers("echo")
    with echo_stack.client(timeout=60) as client:
        before = client.post("/v2/echo/runsync", json={"input": {"pid": True}}).json()
        refreshed = client.post("/v2/echo/runsync", json={"input": {"refresh": True}}).json()
        assert refreshed["status"] == "COMPLETED", refreshed
        # refresh_worker is the SDK's word to the platform, not part of the output.
        assert refreshed["output"] == {"echo": {"refresh": True}, "pid": before["output"]["pid"]}
        old_pid = before["output"]["pid"]
        eventually(
            lambda: not _alive(old_pid), timeout=60, what="the worker process to exit", context=echo_stack.output
        )
        after = client.post("/v2/echo/runsync", json={"input": {"pid": True}}).json()
        assert after["status"] == "COMPLETED", after
        assert after["output"]["pid"] != old_pid
        assert after["workerId"] != refreshed["workerId"]
