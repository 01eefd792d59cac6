"""The idle-vs-cold-start frontier: every policy swept over its knob, on the same traces.

    .venv/bin/python -m benchmarks.frontier                 # 2 h traces, several minutes
    .venv/bin/python -m benchmarks.frontier --tiny          # 10 min traces

One setting of a policy is one point (idle worker-seconds, cold starts, p99 wait); a single
setting compared with another proves little, since each policy trades idle time for cold starts
through its knob. Swept (simulation of `benchmarks/scaling.py`, same seeds and cold-start draws):

- skiff-qd<T>/<I>s, skiff-rc<T>/<I>s: Skiff's autoscaler, queue_delay and request_count targets
  T by idle_timeout I (learned launch gate and keep-warm on, as shipped);
- skiff-pw<K>/<I>s: the same with predictive pre-warm at knob K (`scaling.prewarm`);
- runpod-<I>s: Runpod's fixed idle timeout, 5/30/60/120 s;
- keda-cd<C>: KEDA's aws-sqs-queue scaler at its defaults (cooldown 300 s) and with cooldownPeriod
  30/60/120 s;
- kpa-<W>s: a Knative-KPA-like policy: average concurrency over a stable window W (30/60/120 s)
  and a panic window of W/10, target concurrency 1 per worker, panic mode when the panic
  window wants twice the ready workers (no scale-down while panicking), scale to zero after a
  stable window without load plus the 30 s scale-to-zero grace; a request finding no worker
  starts one at once (the activator).

The goal, per trace: no peer point dominates Skiff's frontier, i.e. for every peer configuration
some Skiff configuration has no more idle worker-seconds and no more cold starts (MET / NOT MET,
with the uncovered peer points). A plot per trace (PNG, matplotlib) goes next to the table.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `benchmarks` and `skiff` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.scaling import MAX_WORKERS, KedaSqs, Policy, Result, RunpodFixed, Simulation, Skiff
from benchmarks.traces import GENERATORS
from skiff_controller.autoscaler import Tuning
from skiff_core.jobs import WorkerState
from skiff_core.spec import ScalerType, ScalingSpec

SKIFF_IDLE_TIMEOUTS = (2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 150.0, 180.0, 300.0, 600.0)
SKIFF_TARGETS = ((ScalerType.QUEUE_DELAY, (1.0, 4.0, 16.0)), (ScalerType.REQUEST_COUNT, (1.0, 5.0, 10.0)))
PREWARM_KNOBS = (2.0, 5.0, 10.0)
PREWARM_IDLE_TIMEOUTS = (2.0, 5.0, 15.0, 60.0)
RUNPOD_IDLE_TIMEOUTS = (5.0, 30.0, 60.0, 120.0)
KEDA_COOLDOWNS = (300.0, 30.0, 60.0, 120.0)  # 300 s is KEDA's default
KPA_STABLE_WINDOWS = (30.0, 60.0, 120.0)
KPA_TICK_S = 2.0
KPA_SCALE_TO_ZERO_GRACE_S = 30.0
# Stopping 10 us after idle_timeout and event ties may cost Skiff a fraction of a second: no miss.
SLACK_IDLE_S = 1.0


class Kpa(Policy):
    """Knative's KPA, reduced to what matters here (see the module docstring)."""

    def __init__(self, stable_s: float, target: float = 1.0) -> None:
        self.name = f"kpa-{stable_s:g}s"
        self.stable_s, self.panic_s, self.target = stable_s, stable_s / 10.0, target
        self.samples: deque[tuple[float, int]] = deque()
        self.panic_until = -math.inf
        self.last_load = -math.inf

    def attach(self, sim: Simulation) -> None:
        sim.at(0.0, lambda: self._tick(sim))

    def on_arrival(self, sim: Simulation) -> None:
        if not sim.workers:
            sim.launch(1)  # the activator holds the request and pokes the autoscaler

    def _average(self, now: float, window: float) -> float:
        inside = [c for t, c in self.samples if t > now - window]
        return sum(inside) / len(inside) if inside else 0.0

    def _tick(self, sim: Simulation) -> None:
        now = sim.now
        running = sum(1 for w in sim.workers.values() if w.state is WorkerState.RUNNING)
        concurrency = len(sim.queue) + running
        if concurrency:
            self.last_load = now
        self.samples.append((now, concurrency))
        while self.samples and self.samples[0][0] <= now - self.stable_s:
            self.samples.popleft()
        stable = math.ceil(self._average(now, self.stable_s) / self.target)
        panic = math.ceil(self._average(now, self.panic_s) / self.target)
        ready = sum(1 for w in sim.workers.values() if w.state is not WorkerState.INITIALIZING)
        if panic >= 2 * max(1, ready):
            self.panic_until = now + self.stable_s
        current = len(sim.workers)
        desired = max(stable, panic, current) if now < self.panic_until else stable
        if desired == 0 and now - self.last_load < self.stable_s + KPA_SCALE_TO_ZERO_GRACE_S:
            desired = min(1, current)
        sim.scale_to(min(desired, MAX_WORKERS), "kpa scale-down")
        sim.at(now + KPA_TICK_S, lambda: self._tick(sim))


def _skiff(name: str, scaler: ScalerType, target: float, idle: float, prewarm: float = 0.0) -> Callable[[], Policy]:
    spec = ScalingSpec(
        min_workers=0, max_workers=MAX_WORKERS, idle_timeout=idle, scaler=scaler, target=target, prewarm=prewarm
    )
    return lambda: Skiff(name, spec, Tuning())


def _named(policy: Policy, name: str) -> Policy:
    policy.name = name
    return policy


def sweep() -> list[tuple[str, Callable[[], Policy]]]:
    """(family, factory) for every point of every policy."""
    points: list[tuple[str, Callable[[], Policy]]] = []
    for scaler, targets in SKIFF_TARGETS:
        short = "qd" if scaler is ScalerType.QUEUE_DELAY else "rc"
        for target in targets:
            for idle in SKIFF_IDLE_TIMEOUTS:
                points.append(("skiff", _skiff(f"skiff-{short}{target:g}/{idle:g}s", scaler, target, idle)))
    for knob in PREWARM_KNOBS:
        for idle in PREWARM_IDLE_TIMEOUTS:
            name = f"skiff-pw{knob:g}/{idle:g}s"
            points.append(("skiff-prewarm", _skiff(name, ScalerType.QUEUE_DELAY, 4.0, idle, knob)))
    for idle in RUNPOD_IDLE_TIMEOUTS:
        points.append(("runpod", lambda i=idle: _named(RunpodFixed(i), f"runpod-{i:g}s")))
    for cooldown in KEDA_COOLDOWNS:
        points.append(("keda", lambda c=cooldown: _named(KedaSqs(cooldown_s=c), f"keda-cd{c:g}")))
    for window in KPA_STABLE_WINDOWS:
        points.append(("kpa", lambda w=window: Kpa(w)))
    return points


def is_skiff(family: str) -> bool:
    return family.startswith("skiff")


def uncovered(rows: Sequence[tuple[str, Result]]) -> list[Result]:
    """Peer points no Skiff point matches on both idle worker-seconds and cold starts."""
    ours = [r for f, r in rows if is_skiff(f)]
    return [
        peer
        for family, peer in rows
        if not is_skiff(family)
        and not any(s.idle_s <= peer.idle_s + SLACK_IDLE_S and s.cold_starts <= peer.cold_starts for s in ours)
    ]


def pareto(results: Sequence[Result]) -> list[Result]:
    """The points no other point beats on both idle worker-seconds and cold starts."""
    front = []
    for r in sorted(results, key=lambda x: (x.idle_s, x.cold_starts)):
        if not front or r.cold_starts < front[-1].cold_starts:
            front.append(r)
    return front


def plot(trace: str, rows: Sequence[tuple[str, Result]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    markers = {"skiff": "o", "skiff-prewarm": "P", "runpod": "s", "keda": "^", "kpa": "D"}
    for family in markers:
        points = [r for f, r in rows if f == family]
        if points:
            ax.scatter(
                [max(1.0, r.idle_s) for r in points],
                [max(1, r.cold_starts) for r in points],
                marker=markers[family],
                label=family,
                alpha=0.8,
            )
    front = pareto([r for f, r in rows if is_skiff(f)])
    ax.step(
        [max(1.0, r.idle_s) for r in front],
        [max(1, r.cold_starts) for r in front],
        where="post",
        color="black",
        linewidth=1,
        label="skiff frontier",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("idle worker-seconds")
    ax.set_ylabel("cold starts")
    ax.set_title(f"{trace}: every policy swept over its knob (lower left is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


HEADER = f"{'trace':<9} {'family':<14} {'policy':<20} {'cold':>5} {'idle w-s':>9} {'wait p50':>9} {'wait p99':>9}  note"


def run(traces: Sequence[str], horizon: float, seed: int, plots: Path | None) -> dict[str, bool]:
    verdicts: dict[str, bool] = {}
    print(HEADER)
    for name in traces:
        trace = GENERATORS[name](seed * 1000 + list(GENERATORS).index(name), horizon)
        rows = [(family, Simulation(trace, make(), seed=seed).run()) for family, make in sweep()]
        front = {id(r) for r in pareto([r for f, r in rows if is_skiff(f)])}
        missed = uncovered(rows)
        for family, r in rows:
            note = "frontier" if id(r) in front else ("NOT covered" if r in missed else "")
            if r.completed != r.jobs or r.violations:
                note += f" VIOLATIONS: {r.violations or 'jobs lost'}"
            print(
                f"{r.trace:<9} {family:<14} {r.policy:<20} {r.cold_starts:>5} {r.idle_s:>9.0f} "
                f"{r.percentile(0.5):>8.2f}s {r.percentile(0.99):>8.2f}s  {note}"
            )
        verdicts[name] = not missed
        detail = ", ".join(f"{r.policy} ({r.cold_starts} cold, {r.idle_s:.0f} idle)" for r in missed)
        print(f"{name}: {'MET' if not missed else 'NOT MET'}" + (f": not covered: {detail}" if missed else ""))
        if plots is not None:
            path = plots / f"frontier-{name}.png"
            plot(name, rows, path)
            print(f"{name}: plot written to {path}")
    return verdicts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="10-minute traces instead of 2 hours")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--traces", nargs="+", choices=sorted(GENERATORS), default=["bursty", "diurnal", "sparse"])
    parser.add_argument("--plots", type=Path, default=Path(__file__).resolve().parent, help="where PNGs go")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--horizon", type=float, help="trace length in seconds (overrides --tiny)")
    args = parser.parse_args(argv)
    horizon = args.horizon or (600.0 if args.tiny else 7200.0)
    print(f"frontier: seed {args.seed}, {horizon:.0f}s traces, max_workers {MAX_WORKERS}")
    run(args.traces, horizon, args.seed, None if args.no_plots else args.plots)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
