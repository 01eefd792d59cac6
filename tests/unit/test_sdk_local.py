"""Local test modes: `--test_input`, `test_input.json`, and a clear message when there is neither."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

WORKER = r"""
import os, sys
if os.environ.get("TEST_SDK") == "runpod":
    import runpod as sdk
else:
    import skiff as sdk


def handler(job):
    if job["input"].get("fail"):
        raise ValueError("boom")
    sdk.serverless.progress_update(job, "working")
    return {"echo": job["input"], "argv": sys.argv[1:]}


def gen(job):
    for i in range(job["input"]["n"]):
        yield i


sdk.serverless.start({"handler": gen if os.environ.get("GEN") else handler})
"""


@pytest.fixture
def worker(tmp_path: Path) -> Path:
    path = tmp_path / "worker.py"
    path.write_text(WORKER)
    return path


def run(worker: Path, *args: str, sdk: str = "skiff", **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "SKIFF_"))}
    base.update({"PYTHONPATH": str(REPO), "TEST_SDK": sdk, "HOME": str(worker.parent), **env})
    return subprocess.run(
        [sys.executable, str(worker), *args], cwd=worker.parent, env=base, capture_output=True, text=True, timeout=60
    )


def result_line(stdout: str) -> object:
    [line] = [line for line in stdout.splitlines() if "| Job result: " in line]
    return json.loads(line.split("| Job result: ", 1)[1])


def test_test_input_runs_one_job_and_exits_zero(worker: Path) -> None:
    done = run(worker, "--test_input", '{"input": {"a": 1}}', "--my-flag")
    assert done.returncode == 0, done.stdout + done.stderr
    # The program's own arguments stay in sys.argv, the SDK's are consumed (as runpod).
    assert result_line(done.stdout) == {"output": {"echo": {"a": 1}, "argv": ["--my-flag"]}}
    assert "INFO   | Job local_test completed successfully." in done.stdout
    assert "Progress update: working" in done.stdout  # progress is shown, not sent anywhere


def test_same_outcome_lines_as_runpod(worker: Path) -> None:
    for args, code, line in [
        (("--test_input", '{"input": {"a": 1}}'), 0, "INFO   | Job local_test completed successfully."),
        (("--test_input", '{"input": {"fail": true}}'), 1, "ERROR  | Job local_test failed with error: "),
    ]:
        ours, theirs = run(worker, *args), run(worker, *args, sdk="runpod", RUNPOD_LOG_LEVEL="INFO")
        assert ours.returncode == theirs.returncode == code, ours.stdout + theirs.stdout
        assert line in ours.stdout and line in theirs.stdout


def test_handler_error_exits_nonzero_with_the_report(worker: Path) -> None:
    done = run(worker, "--test_input", '{"input": {"fail": true}}')
    assert done.returncode == 1
    assert "Job local_test failed with error:" in done.stdout
    assert '"error_message": "boom"' in done.stdout


def test_test_input_json_in_cwd(worker: Path) -> None:
    (worker.parent / "test_input.json").write_text('{"input": {"from": "file"}, "id": "my-job"}')
    done = run(worker)
    assert done.returncode == 0, done.stdout
    assert "Using test_input.json as job input." in done.stdout
    assert "Job my-job completed successfully." in done.stdout
    assert result_line(done.stdout) == {"output": {"echo": {"from": "file"}, "argv": []}}


def test_generator_chunks_are_collected(worker: Path) -> None:
    done = run(worker, "--test_input", '{"input": {"n": 3}}', GEN="1")
    assert done.returncode == 0, done.stdout
    assert result_line(done.stdout) == {"output": [0, 1, 2]}


def test_no_job_source_explains_what_to_do(worker: Path) -> None:
    done = run(worker)
    assert done.returncode == 1
    assert "RUNPOD_WEBHOOK_GET_JOB is not set" in done.stdout
    assert "--test_input" in done.stdout and "test_input.json" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "--test_input is not valid JSON"),
        ('{"id": "x"}', '--test_input has no "input"'),
        ("[1, 2]", "--test_input must be a JSON object"),
    ],
)
def test_bad_test_input_is_a_clear_error(worker: Path, text: str, message: str) -> None:
    done = run(worker, "--test_input", text)
    assert done.returncode == 1
    assert message in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_bad_test_input_file_is_a_clear_error(worker: Path) -> None:
    (worker.parent / "test_input.json").write_text("{oops")
    done = run(worker)
    assert done.returncode == 1
    assert "test_input.json is not valid JSON" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_serve_api_flag_is_refused_clearly(worker: Path) -> None:
    done = run(worker, "--rp_serve_api")
    assert done.returncode == 2
    assert "--rp_serve_api" in done.stdout and "skiff up" in done.stdout
