"""Prometheus metrics of the controller: what it observes of shared state and what it decides.

Gauges of shared state (queue depth, oldest wait, workers by state, wanted workers) come only
from the controller that leads: a standby exports none, so a sum over every controller and every
gateway replica counts each worker and each queued job once. The cold start histogram lives here
too: the controller sees each worker's launch time (the orchestrator's) and its first job-take
(the gateways' records), and observes each worker once.

Served on the controller's `--port` (`skiff controller`) or on the gateway's `/metrics` (`skiff up`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skiff_core.jobs import WorkerState

COLD_START_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
STATES = (*(s.value for s in WorkerState), "stopping")


@dataclass
class _Observed:
    queued: int = 0
    in_flight: int = 0
    oldest_s: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    wanted: int = 0
    asked: int = 0


def decision_reasons(reason: str, start: int, drained: int, rolling: bool) -> list[str]:
    """A bounded label for what a pass did, from the autoscaler's free-text reason."""
    reasons = []
    if start:
        reasons.append("rolling_update" if rolling else "wake" if "wake:" in reason else "scale_up")
    if "capped at max_workers" in reason:
        reasons.append("capped_at_max_workers")
    if drained:
        reasons.append(
            "rolling_update" if rolling else "over_max_workers" if "over max_workers" in reason else "idle_timeout"
        )
    return reasons


class ControllerMetrics(Collector):
    def __init__(self, leading: Callable[[], bool]) -> None:
        self._leading = leading
        self._observed: dict[str, _Observed] = {}
        self._ready_seen: dict[str, set[str]] = {}
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "skiff_scaling_decisions_total", "Scaling actions taken, by reason", ["endpoint", "reason"], registry=r
        )
        self.launches = Counter(
            "skiff_worker_launches_total", "Workers asked of the orchestrator", ["endpoint"], registry=r
        )
        self.exits = Counter(
            "skiff_worker_exits_total",
            "Workers that left, by cause: scale_down, unhealthy (stopped pinging), not_ready "
            "(worker_startup_timeout_s), stuck (held an ended job), crashed, exited (asked to be replaced)",
            ["endpoint", "cause"],
            registry=r,
        )
        self.cold_start = Histogram(
            "skiff_worker_cold_start_seconds",
            "Time from a worker's launch to its first job-take",
            ["endpoint"],
            buckets=COLD_START_BUCKETS,
            registry=r,
        )
        r.register(self)

    # What a pass saw and did.
    def observed(
        self,
        endpoint: str,
        queued: int,
        in_flight: int,
        oldest_s: float,
        states: Iterable[str],
        wanted: int,
        asked: int,
    ) -> None:
        counts = dict.fromkeys(STATES, 0)
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        self._observed[endpoint] = _Observed(queued, in_flight, oldest_s, counts, wanted, asked)

    def ready(self, endpoint: str, worker_id: str, cold_start_s: float, present: Iterable[str]) -> None:
        """A worker was seen ready; observed once per worker (`present`: every id the pass saw)."""
        seen = self._ready_seen.setdefault(endpoint, set())
        if worker_id not in seen:
            seen.add(worker_id)
            self.cold_start.labels(endpoint).observe(max(0.0, cold_start_s))
        seen.intersection_update(present)
        seen.add(worker_id)

    def acted(self, endpoint: str, reasons: Iterable[str], launched: int, exits: dict[str, int]) -> None:
        for reason in reasons:
            self.decisions.labels(endpoint, reason).inc()
        if launched:
            self.launches.labels(endpoint).inc(launched)
        for cause, count in exits.items():
            if count:
                self.exits.labels(endpoint, cause).inc(count)

    def forget(self, endpoint: str) -> None:
        self._observed.pop(endpoint, None)
        self._ready_seen.pop(endpoint, None)

    # Collector: the gauges, from the leader only.
    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        if self._leading():
            for endpoint, seen in sorted(self._observed.items()):
                families[0].add_metric([endpoint], seen.queued)
                families[1].add_metric([endpoint], seen.in_flight)
                families[2].add_metric([endpoint], seen.oldest_s)
                for state, count in seen.states.items():
                    families[3].add_metric([endpoint, state], count)
                families[4].add_metric([endpoint], seen.wanted)
                families[5].add_metric([endpoint], seen.asked)
        yield from families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("skiff_queue_depth", "Jobs waiting in the queue (leader only)", labels=["endpoint"]),
            GaugeMetricFamily("skiff_jobs_in_flight", "Jobs handed to a worker (leader only)", labels=["endpoint"]),
            GaugeMetricFamily(
                "skiff_queue_oldest_wait_seconds", "Age of the oldest queued job (leader only)", labels=["endpoint"]
            ),
            GaugeMetricFamily("skiff_workers", "Workers by state (leader only)", labels=["endpoint", "state"]),
            GaugeMetricFamily(
                "skiff_workers_wanted", "Serving workers the autoscaler aims at (leader only)", labels=["endpoint"]
            ),
            GaugeMetricFamily(
                "skiff_workers_asked", "Workers asked of the orchestrator (leader only)", labels=["endpoint"]
            ),
        ]
