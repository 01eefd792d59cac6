"""Check the scaling simulator against the real stack: one slice of a trace, both ways.

    .venv/bin/python -m benchmarks.replay                         # 10 min of each trace at 10x
    .venv/bin/python -m benchmarks.replay --traces bursty --slice 300 --speed 10

A slice of the trace (its first `--slice` seconds) is compressed `--speed` times: arrivals and
job durations are divided by it, and so are the policy's idle_timeout and queue_delay target.
Cold starts are not compressed (a process cannot start in 0.2 s): both sides draw them from the
simulator's lognormal (median 2 s), the simulator from its seeded stream, each real worker from
a stream seeded by its id.

Real side: `skiff_cli.embedded.Stack` in this process (gateway, controller, local orchestrator,
SQLite in a temporary directory) serving one endpoint of `benchmarks/workers/sleep_skiff.py`
workers; each job is POSTed to /run at its compressed arrival time. Launches come from the
orchestrator's launch hook, stop signals from its scale calls, and each worker logs when it got
ready (after its drawn cold start), each job's start and end, and its exit. Measured:

- cold starts: launches;
- idle worker-seconds: per worker, ready -> stop signal minus the time it ran jobs (the
  simulator's definition: a worker is idle from ready or a job's end until a job or its stop);
  the exit lag (stop signal -> process exit) is printed apart, since the simulator has none;
- wait p50/p99: POST /run sent -> the job's start in the worker;
- dispatch: the part of the idle time a worker spent free while a job already sent was on its
  way to it (job-done, job-take, handler start): instant in the simulator, so "idle - dispatch"
  is printed too.

Simulated: `benchmarks.scaling.Simulation` on the same compressed slice and seed, with the
controller's 0.5 s tick, twice: with its own cold-start draws, and with the measured cold start
of the real launch nearest in time to each simulated one (a loaded machine starts processes
slower than the draw; this column is the like-for-like one). The verdict compares the measured
number with the latter: "agree" within 10%, otherwise DIFFER, and the line under each trace
gives the measured cold starts, exit lag and dispatch time that explain a difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` and `skiff` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import scaling
from benchmarks.traces import GENERATORS, Job, Trace
from skiff_controller.autoscaler import Tuning
from skiff_core.jobs import WorkerRecord
from skiff_core.spec import ScalerType, ScalingSpec

WORKER = "benchmarks/workers/sleep_skiff.py"
# Skiff as shipped: queue_delay 4 s, idle_timeout 5 s (trace time).
TARGET_S = 4.0
IDLE_TIMEOUT_S = 5.0
CONTROLLER_TICK_S = 0.5
AGREE = 0.10


@dataclass
class Measured:
    cold_starts: int = 0
    idle_s: float = 0.0
    exit_lag_s: float = 0.0
    waits: list[float] = field(default_factory=list)
    jobs_done: int = 0
    cold_starts_s: list[float] = field(default_factory=list)  # launch -> first job-take, in launch order
    # (launch time since the first arrival, its cold start): on a busy machine a process starts
    # slower while many start at once, so the simulator is given the cold start of the real
    # launch nearest in time to each of its own.
    cold_by_time: list[tuple[float, float]] = field(default_factory=list)
    # Idle time a worker spent between a job's end (or its first take) and its next job's start
    # although that job had already been sent: the job-done, job-take round trip the simulator
    # takes as instant.
    dispatch_s: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def compressed(trace: Trace, slice_s: float, speed: float) -> Trace:
    jobs = tuple(Job(j.arrival / speed, j.duration / speed) for j in trace.jobs if j.arrival < slice_s)
    return Trace(trace.name, jobs, slice_s / speed)


def scaling_spec(speed: float) -> ScalingSpec:
    return ScalingSpec(
        min_workers=0,
        max_workers=scaling.MAX_WORKERS,
        idle_timeout=IDLE_TIMEOUT_S / speed,
        scaler=ScalerType.QUEUE_DELAY,
        target=TARGET_S / speed,
    )


class _Replayed:
    """Stands in for the simulator's cold-start stream: for a launch at simulated time t, the
    measured cold start of the real launch nearest to t."""

    def __init__(self, sim: scaling.Simulation, by_time: Sequence[tuple[float, float]]) -> None:
        self._sim = sim
        self._by_time = sorted(by_time) or [(0.0, scaling.COLD_START_MEDIAN_S)]

    def lognormvariate(self, _mu: float, _sigma: float) -> float:
        now = self._sim.now
        return min(self._by_time, key=lambda p: abs(p[0] - now))[1]


def simulate(
    trace: Trace, speed: float, seed: int, cold_starts: Sequence[tuple[float, float]] | None = None
) -> scaling.Result:
    """The simulator on this slice, on the controller's tick; with `cold_starts`, those instead of
    its own draws."""
    tick = scaling.SKIFF_TICK_S
    scaling.SKIFF_TICK_S = CONTROLLER_TICK_S
    try:
        sim = scaling.Simulation(trace, scaling.Skiff("skiff-qd4", scaling_spec(speed), Tuning()), seed=seed)
        if cold_starts is not None:
            sim._cold_rng = _Replayed(sim, cold_starts)  # type: ignore[assignment]
        return sim.run()
    finally:
        scaling.SKIFF_TICK_S = tick


async def replay(trace: Trace, speed: float) -> Measured:
    import httpx

    from skiff_cli.embedded import Stack
    from skiff_core.config import Settings
    from skiff_core.spec import EndpointSpec

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="skiff-replay-") as tmp:
        logs = Path(tmp) / "workers"
        logs.mkdir()
        settings = Settings(state_dir=Path(tmp), host="127.0.0.1", port=port, api_key="sk_replay")
        spec = EndpointSpec(
            name="replay",
            command=[sys.executable, "-u", WORKER],
            scaling=scaling_spec(speed),
            env={"REPLAY_LOG_DIR": str(logs)},
        )
        stack = Stack(settings, [spec], "sk_replay", project_dir=Path.cwd())
        launches: dict[str, float] = {}
        stops: dict[str, float] = {}
        stack.launch_hooks.append(lambda worker, _ep, at: launches.setdefault(worker, at))
        scale = stack.orchestrator.scale

        async def recording_scale(
            endpoint: str, count: int, *, stop: Sequence[str] = (), kill: Sequence[str] = ()
        ) -> None:
            for worker_id in [*stop, *kill]:
                stops.setdefault(worker_id, time.time())
            await scale(endpoint, count, stop=stop, kill=kill)

        stack.orchestrator.scale = recording_scale  # type: ignore[method-assign]
        first_takes: dict[str, float] = {}
        taking = stack.ctx.workers.taking

        def recording_taking(worker_id: str, endpoint: str) -> WorkerRecord:
            first_takes.setdefault(worker_id, time.time())
            return taking(worker_id, endpoint)

        stack.ctx.workers.taking = recording_taking  # type: ignore[method-assign]
        ready = asyncio.Event()
        serving = asyncio.create_task(stack.serve(on_ready=ready))
        sent: dict[str, float] = {}
        try:
            await asyncio.wait_for(ready.wait(), 60)
            headers = {"Authorization": "Bearer sk_replay"}
            async with httpx.AsyncClient(base_url=settings.gateway_url, headers=headers, trust_env=False) as client:

                async def submit(job: Job) -> None:
                    at = time.time()
                    response = await client.post("/v2/replay/run", json={"input": {"sleep": job.duration}})
                    response.raise_for_status()
                    sent[response.json()["id"]] = at

                origin = time.monotonic()
                origin_wall = time.time()
                tasks = []
                for job in trace.jobs:
                    delay = origin + job.arrival - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(submit(job)))
                await asyncio.gather(*tasks)
                deadline = time.monotonic() + 120 + trace.horizon_s
                while time.monotonic() < deadline:
                    health = (await client.get("/v2/replay/health")).json()
                    jobs = health["jobs"]
                    workers = await stack.orchestrator.workers("replay")
                    if not jobs["inQueue"] and not jobs["inProgress"] and not workers:
                        break
                    await asyncio.sleep(0.2)
        finally:
            stack.request_stop()
            await asyncio.wait_for(serving, 60)
        measured = _measure(logs, launches, first_takes, stops, sent)
        measured.cold_by_time = [
            (launches[w] - origin_wall, first_takes[w] - launches[w]) for w in launches if w in first_takes
        ]
        return measured


def _measure(
    logs: Path, launches: dict[str, float], ready_at: dict[str, float], stops: dict[str, float], sent: dict[str, float]
) -> Measured:
    out = Measured(cold_starts=len(launches))
    for worker_id in sorted(launches, key=launches.__getitem__):
        if worker_id in ready_at:
            out.cold_starts_s.append(ready_at[worker_id] - launches[worker_id])
    for path in logs.glob("*.jsonl"):
        worker_id = path.stem
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        ready = ready_at.get(worker_id)
        starts = {e["job"]: e["t"] for e in events if e["ev"] == "start"}
        ends = {e["job"]: e["t"] for e in events if e["ev"] == "end"}
        exited = next((e["t"] for e in events if e["ev"] == "exit"), None)
        if ready is None:
            continue
        stop = stops.get(worker_id, exited or ready)
        busy = sum(ends.get(j, stop) - t for j, t in starts.items())
        out.idle_s += max(0.0, stop - ready - busy)
        if exited is not None and worker_id in stops:
            out.exit_lag_s += max(0.0, exited - stops[worker_id])
        for job_id, t in starts.items():
            if job_id in sent:
                out.waits.append(t - sent[job_id])
        free_since = ready
        for job_id, t in sorted(starts.items(), key=lambda item: item[1]):
            if job_id in sent and sent[job_id] < t:
                out.dispatch_s += max(0.0, t - max(free_since, sent[job_id]))
            free_since = ends.get(job_id, t)
        out.jobs_done += len(ends)
    return out


def verdict(measured: float, simulated: float) -> str:
    if simulated == 0:
        return "agree" if measured == 0 else "differ"
    diff = (measured - simulated) / simulated
    return f"{diff:+.0%} " + ("agree" if abs(diff) <= AGREE else "DIFFER")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", nargs="+", choices=sorted(GENERATORS), default=["bursty", "diurnal", "sparse"])
    parser.add_argument("--slice", type=float, default=600.0, help="trace seconds replayed (from the start)")
    parser.add_argument("--speed", type=float, default=10.0, help="time compression")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    print(
        f"replay: first {args.slice:g}s of each 2 h trace at {args.speed:g}x, seed {args.seed}, Skiff queue_delay "
        f"{TARGET_S:g}s / idle_timeout {IDLE_TIMEOUT_S:g}s (compressed too), cold start lognormal median "
        f"{scaling.COLD_START_MEDIAN_S:g}s (not compressed); real-time seconds"
    )
    print(
        f"{'trace':<8} {'jobs':>5} {'metric':<14} {'sim (draws)':>11} {'sim (measured cold)':>19} "
        f"{'measured':>9}  verdict (measured vs sim with the measured cold starts)"
    )
    for name in args.traces:
        full = GENERATORS[name](args.seed * 1000 + list(GENERATORS).index(name), 7200.0)
        trace = compressed(full, args.slice, args.speed)
        sim = simulate(trace, args.speed, args.seed)
        real = asyncio.run(replay(trace, args.speed))
        same = simulate(trace, args.speed, args.seed, real.cold_by_time)
        n = len(trace.jobs)
        rows = [
            ("cold starts", sim.cold_starts, same.cold_starts, real.cold_starts, "{:.0f}"),
            ("idle worker-s", sim.idle_s, same.idle_s, real.idle_s, "{:.1f}"),
            ("idle - dispatch", sim.idle_s, same.idle_s, real.idle_s - real.dispatch_s, "{:.1f}"),
            ("wait p50 s", sim.percentile(0.5), same.percentile(0.5), real.percentile(0.5), "{:.2f}"),
            ("wait p99 s", sim.percentile(0.99), same.percentile(0.99), real.percentile(0.99), "{:.2f}"),
        ]
        for metric, s1, s2, m, fmt in rows:
            print(
                f"{name:<8} {n:>5} {metric:<14} {fmt.format(s1):>11} {fmt.format(s2):>19} {fmt.format(m):>9}  "
                f"{verdict(m, s2)}"
            )
        colds = sorted(real.cold_starts_s)
        print(
            f"{name:<8} {n:>5} jobs done {real.jobs_done} of {n}; cold start (launch -> first job-take) measured "
            f"median {colds[len(colds) // 2] if colds else 0:.2f}s against drawn median "
            f"{scaling.COLD_START_MEDIAN_S:g}s; exit lag (stop signal -> exit, in neither idle figure) "
            f"{real.exit_lag_s:.1f} worker-s; dispatch (a sent job waiting on a free worker's job-done/job-take "
            f"round trip, idle to the real stack, instant in the simulator) {real.dispatch_s:.1f} worker-s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
