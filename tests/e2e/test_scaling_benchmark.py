"""benchmarks/scaling.py in its tiny mode: the table is printed and its invariants hold (not speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scaling
from benchmarks.traces import GENERATORS, Job, Trace

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ["runpod-5s", "keda-sqs", "skiff-rc1-plain", "skiff-rc1", "skiff-qd4"]


@pytest.fixture(scope="module")
def output() -> str:
    done = subprocess.run(
        [sys.executable, "benchmarks/scaling.py", "--tiny", "--pass-endpoints", "300"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _rows(text: str) -> dict[tuple[str, str], list[str]]:
    rows = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[0] in GENERATORS and fields[1] in POLICIES:
            rows[(fields[0], fields[1])] = fields
    return rows


def test_prints_one_row_per_trace_and_policy(output: str) -> None:
    assert scaling.HEADER in output
    rows = _rows(output)
    assert set(rows) == {(t, p) for t in GENERATORS for p in POLICIES}
    for (trace, _), fields in rows.items():
        jobs = int(fields[2])
        assert jobs == int(rows[(trace, "runpod-5s")][2]), "every policy replays the same trace"
        p50, p99 = float(fields[5].rstrip("s")), float(fields[6].rstrip("s"))
        assert 0 <= p50 <= p99
        assert int(fields[3]) >= 1, "every trace needs at least one cold start"
        assert int(fields[9]) <= scaling.MAX_WORKERS


def test_goal_verdicts_and_side_measurements_are_reported(output: str) -> None:
    rows = _rows(output)
    for (_, policy), fields in rows.items():
        verdict = " ".join(fields[10:])
        if policy.startswith("skiff"):
            assert verdict == "met" or verdict.startswith("NOT met:")
        else:
            assert verdict == "-"
    assert "decision pass over 300 endpoints:" in output
    # The wake latency is measured on a real in-process stack, never made up.
    assert "wake latency, real stack, zero-worker endpoint" in output and "target <= 100 ms" in output
    assert "invariants: ok" in output


def test_the_issues_rules_alone_reproduce_runpods_default(output: str) -> None:
    # Skiff's request_count/1 with its learned rules off is Runpod's default policy: the same
    # cold starts and the same idle worker-seconds on every trace. This pins the simulator and
    # the autoscaler against each other.
    rows = _rows(output)
    for trace in GENERATORS:
        plain, runpod = rows[(trace, "skiff-rc1-plain")], rows[(trace, "runpod-5s")]
        assert plain[3] == runpod[3], trace
        assert abs(int(plain[7]) - int(runpod[7])) <= 1, trace


def test_learned_rules_cut_cold_starts_where_they_are_meant_to(output: str) -> None:
    rows = _rows(output)
    for trace in ("diurnal", "periodic"):  # a gate for steady load, keep-warm for periodic calls
        assert int(rows[(trace, "skiff-rc1")][3]) < int(rows[(trace, "skiff-rc1-plain")][3]), trace


class _Overeager(scaling.Policy):
    name = "overeager"

    def on_arrival(self, sim: scaling.Simulation) -> None:
        sim.launch(scaling.MAX_WORKERS + 1)

    def on_idle(self, sim: scaling.Simulation, worker: scaling.SimWorker) -> None:
        for other in list(sim.workers.values()):
            sim.stop(other, reason="overeager")


def test_the_simulation_catches_a_policy_that_breaks_the_rules() -> None:
    trace = Trace("two", (Job(0.0, 5.0), Job(1.0, 5.0)), horizon_s=10.0)
    result = scaling.Simulation(trace, _Overeager(), seed=1).run()
    assert any("> max" in v for v in result.violations)
    assert any("stopped a running worker" in v or "stopped a initializing worker" in v for v in result.violations)


def test_bad_arguments_fail_cleanly() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling", "--pass-endpoints", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--pass-endpoints must be at least 1" in done.stderr
    assert "Traceback" not in done.stderr


def test_frontier_sweeps_every_policy_and_prints_a_verdict_and_a_plot_per_trace(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "benchmarks/frontier.py", "--horizon", "120", "--traces", "bursty", "--plots", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    families = {line.split()[1] for line in done.stdout.splitlines() if line.startswith("bursty ")}
    assert {"skiff", "skiff-prewarm", "runpod", "keda", "kpa"} <= families
    assert "bursty: MET" in done.stdout or "bursty: NOT MET" in done.stdout
    assert "VIOLATIONS" not in done.stdout
    assert (tmp_path / "frontier-bursty.png").read_bytes()[:4] == b"\x89PNG"


def test_frontier_dominance_is_judged_on_both_idle_time_and_cold_starts() -> None:
    from benchmarks.frontier import uncovered
    from benchmarks.scaling import Result

    def point(policy: str, cold: int, idle: float) -> Result:
        return Result("t", policy, 10, cold_starts=cold, idle_s=idle)

    skiff = [("skiff", point("s1", 10, 100.0)), ("skiff", point("s2", 3, 500.0))]
    covered = ("keda", point("k1", 5, 600.0))  # s2 has fewer of both
    beaten = ("keda", point("k2", 5, 200.0))  # s1 idles less but cold-starts more; s2 the reverse
    assert [r.policy for r in uncovered([*skiff, covered, beaten])] == ["k2"]


def test_replay_runs_a_slice_through_the_real_stack_beside_the_simulator() -> None:
    """A 2-minute bursty slice at 10x through a real in-process `skiff up`: every job runs and
    each metric is printed for the simulator and the real stack (agreement is the benchmark's
    to report, not the test's: it depends on the machine's process start times)."""
    done = subprocess.run(
        [sys.executable, "benchmarks/replay.py", "--traces", "bursty", "--slice", "120", "--speed", "10"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("bursty ")]
    metrics = {" ".join(r[2:4]) for r in rows}
    assert {"cold starts", "idle worker-s", "wait p50", "wait p99"} <= metrics, done.stdout
    jobs = int(rows[0][1])
    assert f"jobs done {jobs} of {jobs}" in done.stdout
    cold = next(r for r in rows if r[2:4] == ["cold", "starts"])
    assert int(cold[6]) >= 1 and ("agree" in cold[-1] or "DIFFER" in cold[-1])
