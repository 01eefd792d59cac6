"""One worker, one id: with RUNPOD_POD_ID unset the worker makes an id up, and every request it
sends (job-take, job-stop, the heartbeat, progress updates, results, error reports) names that
same id. The gateway leases jobs by worker id and renews a lease only on a ping from the worker
that holds the job, so two ids would lose the job's lease and misfile its progress.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.test_sdk_worker_protocol import FakeGateway, worker_env

WORKER = r"""
import time
import skiff


def handler(job):
    if job["input"].get("fail"):
        raise ValueError("boom")
    skiff.serverless.progress_update(job, {"pct": 50})
    time.sleep(1.0)  # long enough for a few pings that carry this job
    return "finished"


skiff.serverless.start({"handler": handler})
"""


def _worker_ids(gateway: FakeGateway, kind: str) -> set[str]:
    # Paths: /v2/ep/<kind>/<worker id>[/<job id>]
    return {r.path.split("/")[4] for r in gateway.of(kind)}


def test_heartbeat_loop_and_progress_share_the_generated_worker_id(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    gateway = FakeGateway(jobs=[{"id": "job-1", "input": {}}, {"id": "job-2", "input": {"fail": True}}])
    base = gateway.start()
    env = worker_env(base, "skiff", "worker-id", tmp_path)
    del env["RUNPOD_POD_ID"]
    env["RUNPOD_PING_INTERVAL"] = "200"
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        gateway.wait_for(lambda g: {"job-1", "job-2"} <= set(g.done_ids()) and len(g.of("job-done")) >= 3)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        gateway.close()

    assert proc.returncode == 0, output
    [worker_id] = _worker_ids(gateway, "job-take")
    assert worker_id and worker_id != "$ID"
    done = gateway.of("job-done")
    bodies = {(r.path, json.dumps(r.body, sort_keys=True)) for r in done if r.body.get("status") == "IN_PROGRESS"}
    # The progress update went to this worker's job-done URL, like the result after it.
    assert bodies == {(f"/v2/ep/job-done/{worker_id}/job-1", '{"output": {"pct": 50}, "status": "IN_PROGRESS"}')}
    assert _worker_ids(gateway, "job-done") == {worker_id}
    assert _worker_ids(gateway, "job-stop") == {worker_id}
    # The heartbeat pings as the same worker, and its pings carried the running job.
    assert _worker_ids(gateway, "ping") == {worker_id}
    assert any(r.query.get("job_id") == ["job-1"] for r in gateway.of("ping"))
    # The error report of a failing handler names it too.
    [failed] = [r for r in done if r.path.endswith("/job-2")]
    assert json.loads(failed.body["error"])["worker_id"] == worker_id
