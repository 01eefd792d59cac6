"""Only the worker holding a job may report on it: a job-done, job-stream or progress post from
any other worker of the endpoint is refused with 409 (and logged), and the job keeps its holder's
result."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.stack import SkiffProcess, endpoint_hcl
from tests.support.stack import worker_key as stack_worker_key
from tests.support.wait import wait_final, wait_status


def test_a_worker_that_does_not_hold_the_job_cannot_report_on_it(tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints"
    endpoints.mkdir()
    (endpoints / "held.hcl").write_text(
        endpoint_hcl("held", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1})
    )
    stack = SkiffProcess(endpoints, tmp_path / "state").start(timeout=90)  # slow on a busy machine
    try:
        _forged_reports_are_refused(stack)
    finally:
        stack.stop()


def _forged_reports_are_refused(stack: SkiffProcess) -> None:
    stack.wait_ready_workers("held", timeout=90)
    worker_key = stack_worker_key(stack.state_dir, "held")
    with (
        stack.client() as client,
        httpx.Client(base_url=stack.url, headers={"Authorization": f"Bearer {worker_key}"}, timeout=10) as worker,
    ):
        job_id = client.post("/v2/held/run", json={"input": {"sleep": 3, "real": True}}).json()["id"]
        holder = wait_status(client, "held", job_id, {"IN_PROGRESS"})["workerId"]
        forged = '{"output": {"forged": true}}'
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        posts = {
            "done": worker.post(
                f"/v2/held/job-done/not-the-holder/{job_id}?isStream=false", content=forged, headers=form
            ),
            "stream": worker.post(f"/v2/held/job-stream/not-the-holder/{job_id}?isStream=false", content=forged),
            "progress": worker.post(
                f"/v2/held/job-done/not-the-holder/{job_id}?isStream=false",
                json={"status": "IN_PROGRESS", "output": {"forged": "progress"}},
            ),
        }
        for what, reply in posts.items():
            assert reply.status_code == 409, (what, reply.status_code, reply.text)
            assert "not held by worker 'not-the-holder'" in reply.json()["error"], (what, reply.text)
        status = client.get(f"/v2/held/status/{job_id}").json()
        assert status["status"] == "IN_PROGRESS" and "output" not in status, status
        assert client.get(f"/v2/held/stream/{job_id}").json().get("stream", []) == []
        done = wait_final(client, "held", job_id, 30)
    assert done["status"] == "COMPLETED" and done["output"] == {"sleep": 3, "real": True}, done
    assert done["workerId"] == holder
    log = stack.output()
    assert f"refused result for job {job_id} from worker not-the-holder" in log
    assert f"refused stream chunk for job {job_id} from worker not-the-holder" in log
    assert f"refused progress for job {job_id} from worker not-the-holder" in log
