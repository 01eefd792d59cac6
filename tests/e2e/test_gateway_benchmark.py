"""benchmarks/gateway.py in its --quick mode: one table, every row, both modes (cluster mode on moto
and on fauxqs, SQS batching off and on), nothing left running.

Speed is not asserted (the numbers depend on the machine); what is asserted is that the benchmark
really drove jobs through both stacks and reported each measurement with its verdict.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = r"[\d,]+(?:\.\d+)?"
LATENCY = rf"{NUMBER}(?:us)? / {NUMBER}(?:us)? / {NUMBER}(?:us)?"
ROWS = {
    "/run jobs/s, 1 worker(s)": NUMBER,
    "/run jobs/s, 8 worker(s)": NUMBER,
    "/runsync jobs/s, 1 worker(s)": NUMBER,
    "/runsync jobs/s, 8 worker(s)": NUMBER,
    "runsync p50/p95/p99 ms, Skiff worker": LATENCY,
    "handler in-process p50/p95/p99 ms": LATENCY,
    "runpod --rp_serve_api p50/p95/p99 ms": LATENCY,
    "overhead p50 vs in-process (target <= 5 ms)": rf"{NUMBER} ms (?:MET|NOT MET)",
    "best jobs/s, one gateway (target >= 1,000)": rf"{NUMBER} (?:MET|NOT MET)",
}
# Rows with a number for the cluster columns only ("-" for embedded).
CLUSTER_ROWS = {
    "SQS requests/job, /run / /runsync, 8 workers (target <= 1)": rf"{NUMBER} / {NUMBER} (?:MET|NOT MET)",
    "gateway CPU ms/job, /run / /runsync, 8 workers (target <= 1.5)": rf"{NUMBER} / {NUMBER} (?:MET|NOT MET)",
    "SQS cost per 1M jobs (worse of the two)": rf"\${NUMBER}",
}
COLUMNS = [
    "embedded (SQLite)",
    "cluster (moto SQS + Redis), unbatched (before)",
    "cluster (moto SQS + Redis), batched",
    "cluster (fauxqs SQS + Redis), unbatched (before)",
    "cluster (fauxqs SQS + Redis), batched",
]
# Ten runs (two per column; cluster columns start a gateway and a controller), each slow to start
# on a loaded machine.
pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def run() -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "benchmarks/gateway.py", "--quick", "--modes", "embedded,cluster"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1100,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _cells(table: str, label: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"row {label!r} missing from:\n{table}")


def test_table_has_every_column_and_row(run: subprocess.CompletedProcess[str]) -> None:
    header = [c.strip() for c in run.stdout.splitlines()[0].split("|")][1:]
    assert header == COLUMNS
    for label, pattern in ROWS.items():
        cells = _cells(run.stdout, label)
        assert len(cells) == len(COLUMNS), (label, cells)
        for cell in cells:
            assert re.fullmatch(pattern, cell), f"{label}: {cell!r} is not {pattern}"
    for label, pattern in CLUSTER_ROWS.items():
        embedded, *cluster = _cells(run.stdout, label)
        assert embedded == "-"
        for cell in cluster:
            assert re.fullmatch(pattern, cell), f"{label}: {cell!r} is not {pattern}"


def test_throughput_rows_count_completed_jobs(run: subprocess.CompletedProcess[str]) -> None:
    # The detail lines name how many jobs each run completed (every /run job is checked COMPLETED).
    pattern = r"^  (.+?): (/run|/runsync) (\d) worker\(s\): (\d+) jobs in"
    details = re.findall(pattern, run.stdout, re.M)
    assert sorted((m, r, w) for m, r, w, _ in details) == sorted(
        (m, r, w) for m in COLUMNS for r in ("/run", "/runsync") for w in ("1", "8")
    )
    assert all(int(jobs) > 0 for *_, jobs in details)


def test_cluster_runs_count_sqs_requests_per_action(run: subprocess.CompletedProcess[str]) -> None:
    lines = [line for line in run.stdout.splitlines() if line.startswith("  cluster (")]
    assert len(lines) == 16
    for line in lines:
        match = re.search(rf"SQS requests/job ({NUMBER}) \((.+)\)$", line)
        assert match is not None, line
        actions = dict(a.rsplit(" ", 1) for a in match.group(2).split(", "))
        # Every job was sent and received; batched runs send and delete in batches only.
        assert "ReceiveMessage" in actions, line
        if "batched:" in line:
            assert {"SendMessageBatch", "DeleteMessageBatch"} <= set(actions), line
            assert "SendMessage" not in actions and "DeleteMessage" not in actions, line
        else:
            assert {"SendMessage", "DeleteMessage"} <= set(actions), line
        # Cluster mode runs the gateway and the controller as two processes, each metered.
        assert re.search(r"gateway [\d.]+, controller [\d.]+, workers [\d.]+, (moto|fauxqs) [\d.]+", line), line


def test_sqs_servers_and_price_are_stated(run: subprocess.CompletedProcess[str]) -> None:
    note = re.search(r"moto.*?~5-7 ms a call.*?SendMessage p50/p95/p99 (" + LATENCY + ") ms", run.stdout)
    assert note is not None, run.stdout
    assert re.search(r"fauxqs \(https://github.com/kibertoad/fauxqs.*?p50/p95/p99 " + LATENCY, run.stdout)
    assert "$0.40 per million requests" in run.stdout


def test_no_process_is_left_running(run: subprocess.CompletedProcess[str]) -> None:
    match = re.search(r"state dirs and endpoint files under (\S+)", run.stderr)
    assert match is not None, run.stderr
    left = subprocess.run(["pgrep", "-f", match.group(1)], capture_output=True, text=True).stdout.split()
    assert left == [], f"processes still running from the benchmark: {left}"


def test_bad_modes_are_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/gateway.py", "--modes", "embedded,bogus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--modes takes a comma-separated list of embedded, cluster" in done.stderr
    assert "Traceback" not in done.stderr
