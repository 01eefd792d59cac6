"""Per-endpoint scaling decisions: pure, deterministic, clock injected.

The controller calls `Autoscaler.decide` on every tick and on every enqueue; the scaling
benchmark replays traces through the same call with a simulated clock. Nothing here does I/O.

Rules, in the order `decide` applies them (docs/architecture.md, "The life of a worker"):

1. The scaler (`skiff_controller.scalers`) says how many workers the queue asks for.
2. Wake on enqueue: queued work and no worker that could take it starts one at once, whatever
   the scaler says (queue_delay would otherwise wait `target` seconds first).
3. Clamp to [min_workers, max_workers].
4. Learned launch gate (Skiff's own refinement, `Tuning.predict`): a new worker is launched only
   for queued jobs it would start sooner than the workers already there. With EWMAs of observed
   cold starts and execution times, queued jobs are handed in FIFO order to the earliest free
   slot among idle, starting and busy workers; a launch is counted only when that slot is later
   than `now + cold start`. Why: a worker that becomes ready after the job it was launched for
   was already taken costs a cold start plus idle_timeout of idle time and shortens no wait.
   Until both EWMAs have a sample the gate is off (no evidence, trust the scaler), and it never
   holds back the wake-up worker nor the min_workers floor. The next pass re-evaluates, so a
   busy worker that overruns its estimate leads to a launch one tick later.
5. Never exceed max_workers counting every worker that still holds a slot (starting, draining
   and unhealthy ones included): a launch that would exceed it waits for a later pass.
6. Scale-down drains only IDLE workers that have been idle for longer than idle_timeout,
   longest-idle first, and only as many as the scaler's count (never below min_workers) allows.
   Busy and starting workers are never drained. Exception: when max_workers was lowered below
   the running count, idle workers above it are drained at once (max is the user's hard cap).
7. Keep-warm (Skiff's own refinement, `Tuning.keep_warm`): idle_timeout is a floor, never
   shortened. When the pass would scale the endpoint to zero and the recent inter-arrival times
   say that keeping one worker a little longer costs fewer idle worker-seconds than the boot
   worker-seconds of the cold start it would save (`EndpointHistory.keep_warm_pays`), the most
   recently idle worker is kept, at most until idle_timeout + the cold-start EWMA (beyond that a
   fresh boot is cheaper than waiting). Why: for near-periodic traffic whose period sits just
   above idle_timeout, every request would otherwise pay a cold start. For memoryless (Poisson)
   or bursty traffic the test fails and the rule never fires, so "back to zero after
   idle_timeout" holds there exactly; it only ever delays the last worker's stop, by at most one
   cold-start time.
8. Predictive pre-warm (`scaling.prewarm` = K > 0, off by default): with no worker up and
   nothing queued, the recent arrival rate r (remembered gaps, the current silence counted as a
   gap in progress, so the estimate follows a rising or falling time-of-day rate) says how
   likely an arrival is within a cold start c plus idle_timeout T: p = 1 - exp(-r (c + T)). A
   worker is started now when K x c x p (client wait saved, at K idle worker-seconds per second
   of wait) exceeds the expected cost: its idle time before that arrival or T,
   (1 - exp(-r T)) / r, plus its boot wasted if none comes, c x (1 - p). Why: for an endpoint
   whose traffic is frequent enough, a request should not pay a cold start for the silence
   before it; K is the one knob trading idle cost against those waits. The same test keeps the
   last idle worker past idle_timeout (stopping it only to start another would waste a boot).
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from skiff_controller import scalers
from skiff_core.jobs import WorkerRecord, WorkerState
from skiff_core.spec import ScalerType, ScalingSpec

# Workers that will take (or are taking) jobs. DRAINING and UNHEALTHY ones are on their way out:
# they hold a slot against max_workers but are not capacity.
_LIVE = frozenset({WorkerState.INITIALIZING, WorkerState.IDLE, WorkerState.RUNNING})
# "Idle for longer than idle_timeout" is strict; rechecking this much later makes it true.
_EPSILON_S = 1e-5


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the autoscaler needs to know about one worker."""

    id: str
    state: WorkerState
    launched_at: float
    ready_at: float | None = None  # first job-take: cold start = ready_at - launched_at
    idle_since: float | None = None  # set while IDLE
    busy_since: float | None = None  # set while RUNNING: when its current job started

    @classmethod
    def from_record(cls, record: WorkerRecord, *, busy_since: float | None = None) -> WorkerView:
        state = WorkerState.DRAINING if record.draining else record.state
        idle_since = record.idle_since
        if state is WorkerState.IDLE and idle_since is None:
            # An idle worker that never reported when it went idle has been idle since it was
            # last heard from: the conservative choice for a timeout that must not cut short.
            idle_since = record.last_seen_at
        return cls(
            id=record.id,
            state=state,
            launched_at=record.launched_at,
            ready_at=record.first_take_at,
            idle_since=idle_since,
            busy_since=busy_since,
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """One endpoint's state at the moment of a decision."""

    queued: int
    in_progress: int
    oldest_age_s: float
    workers: Sequence[WorkerView] = ()
    enqueue: bool = False  # this pass was triggered by a job arriving

    def __post_init__(self) -> None:
        for name in ("queued", "in_progress", "oldest_age_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"Observation.{name} must be >= 0, got {getattr(self, name)!r}")
        ids = [w.id for w in self.workers]
        if len(ids) != len(set(ids)):
            raise ValueError("Observation.workers lists the same worker id twice")
        for w in self.workers:
            if w.state is WorkerState.IDLE and w.idle_since is None:
                raise ValueError(f"worker {w.id!r} is idle but has no idle_since")


@dataclass(frozen=True, slots=True)
class ScalingDecision:
    desired: int  # serving workers aimed at, within [min_workers, max_workers]
    start: int  # workers to launch now
    drain: tuple[str, ...]  # idle workers to mark draining (no new jobs; stop once idle)
    reason: str
    # The earliest time this decision can change without new input (an idle worker reaching
    # idle_timeout, a queued job reaching the queue_delay target); None when only new input can.
    # Always later than `now`, so a controller may sleep until min(tick, recheck_at).
    recheck_at: float | None = None


@dataclass(frozen=True, slots=True)
class Tuning:
    ewma_alpha: float = 0.3  # weight of the newest sample: adapts within a few jobs
    predict: bool = True  # rule 4, the learned launch gate
    keep_warm: bool = True  # rule 7
    keep_warm_min_evidence: int = 4  # gaps longer than the current silence needed to trust rule 7
    gap_history: int = 32  # inter-arrival gaps remembered per endpoint


class Ewma:
    __slots__ = ("alpha", "value")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self.value: float | None = None

    def add(self, sample: float) -> None:
        if sample < 0:
            return  # clock skew between hosts: a negative duration is no evidence
        self.value = sample if self.value is None else self.value + self.alpha * (sample - self.value)


@dataclass(slots=True)
class _Seen:
    cold_start_recorded: bool
    busy_since: float | None


@dataclass(slots=True)
class EndpointHistory:
    """What the autoscaler has learned about one endpoint from the observations it was shown."""

    tuning: Tuning = field(default_factory=Tuning)
    cold_start: Ewma = field(init=False)
    execution: Ewma = field(init=False)
    gaps: deque[float] = field(init=False)
    last_arrival: float | None = None
    _seen: dict[str, _Seen] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cold_start = Ewma(self.tuning.ewma_alpha)
        self.execution = Ewma(self.tuning.ewma_alpha)
        self.gaps = deque(maxlen=self.tuning.gap_history)

    def learn(self, obs: Observation, now: float) -> None:
        """Fold one observation in: arrival gaps, cold starts and execution times.

        Execution times are inferred from a worker's busy_since changing between passes (busy ->
        idle gives the exact run time; busy -> busy with a new busy_since gives an upper bound,
        since the worker may have idled in between). A controller that knows exact times can
        also call `Autoscaler.observe_execution`.
        """
        if obs.enqueue:
            if self.last_arrival is not None and now >= self.last_arrival:
                self.gaps.append(now - self.last_arrival)
            self.last_arrival = now
        seen: dict[str, _Seen] = {}
        for w in obs.workers:
            prev = self._seen.get(w.id)
            recorded = prev is not None and prev.cold_start_recorded
            if not recorded and w.ready_at is not None:
                self.cold_start.add(w.ready_at - w.launched_at)
                recorded = True
            if prev is not None and prev.busy_since is not None:
                if w.busy_since is not None and w.busy_since > prev.busy_since:
                    self.execution.add(w.busy_since - prev.busy_since)
                elif w.busy_since is None and w.idle_since is not None and w.idle_since >= prev.busy_since:
                    self.execution.add(w.idle_since - prev.busy_since)
            seen[w.id] = _Seen(recorded, w.busy_since)
        self._seen = seen  # forget workers that are gone: memory stays bounded by live workers

    def keep_warm_pays(self, now: float, window: float, cold_start: float) -> bool:
        """Would keeping one worker up for another `window` seconds cost fewer worker-seconds than
        the cold start it is expected to save?

        Over the remembered inter-arrival gaps longer than the current silence (what the next
        gap can still be), expected boot seconds saved = cold_start x the share that ends within
        the window; expected idle seconds spent = the mean of min(gap, silence + window) -
        silence. Keep only when saved > spent. Memoryless (Poisson) or long gaps fail this test;
        gaps that cluster just past the silence pass it.
        """
        if self.last_arrival is None or window <= 0 or cold_start <= 0:
            return False
        silence = now - self.last_arrival
        longer = [g for g in self.gaps if g > silence]
        if len(longer) < self.tuning.keep_warm_min_evidence:
            return False
        horizon = silence + window
        saved = cold_start * sum(1 for g in longer if g <= horizon)
        spent = sum(min(g, horizon) - silence for g in longer)
        return saved > spent

    def arrival_rate(self, now: float) -> float | None:
        """Arrivals per second over the remembered gaps, the current silence counted as one more
        (a lower bound on the gap in progress); None until there are a few gaps."""
        if self.last_arrival is None or len(self.gaps) < self.tuning.keep_warm_min_evidence:
            return None
        silence = max(0.0, now - self.last_arrival)
        total = sum(self.gaps) + silence
        return (len(self.gaps) + 1) / total if total > 0 else None

    def prewarm_pays(self, now: float, knob: float, idle_timeout: float, cold_start: float) -> bool:
        """Rule 8: is one worker started now worth it (see the module docstring)?"""
        rate = self.arrival_rate(now)
        if rate is None or knob <= 0 or cold_start <= 0:
            return False
        p = 1.0 - math.exp(-rate * (cold_start + idle_timeout))
        idle = (1.0 - math.exp(-rate * idle_timeout)) / rate
        return knob * cold_start * p > idle + cold_start * (1.0 - p)


def _helpful_launches(
    now: float,
    queued: int,
    idle: int,
    starting: Iterable[WorkerView],
    busy: Iterable[WorkerView],
    cold: float,
    execution: float,
    limit: int,
) -> int:
    """How many new workers would start some queued job sooner than the existing ones (rule 4)."""
    new_ready = now + cold
    slots = [now] * idle
    slots.extend(max(now, w.launched_at + cold) for w in starting)
    for w in busy:
        elapsed = 0.0 if w.busy_since is None else max(0.0, now - w.busy_since)
        # Expected remaining time: the mean minus what has run, but never less than what has
        # already run. Job times are heavy-tailed (a job that overran its mean has likely far to
        # go, Lindy-style), so an overrunning job must not hide the need for a launch: once it
        # has run for longer than a cold start, a new worker is expected to be sooner.
        slots.append(now + max(execution - elapsed, elapsed))
    heapq.heapify(slots)
    launched = 0
    for _ in range(queued):
        if launched >= limit:
            break
        if slots and slots[0] <= new_ready:
            heapq.heapreplace(slots, slots[0] + execution)
        else:
            launched += 1
            heapq.heappush(slots, new_ready + execution)
    return launched


def decide(
    spec: ScalingSpec,
    obs: Observation,
    now: float,
    history: EndpointHistory | None = None,
    tuning: Tuning | None = None,
) -> ScalingDecision:
    """The scaling decision for one endpoint at `now`. Pure: reads, never mutates, its inputs."""
    tuning = tuning or (history.tuning if history is not None else Tuning())
    starting = [w for w in obs.workers if w.state is WorkerState.INITIALIZING]
    idle = [w for w in obs.workers if w.state is WorkerState.IDLE]
    busy = [w for w in obs.workers if w.state is WorkerState.RUNNING]
    live = len(starting) + len(idle) + len(busy)
    occupied = len(obs.workers)
    lo, hi, timeout = spec.min_workers, spec.max_workers, spec.idle_timeout

    load = scalers.Load(obs.queued, obs.in_progress, obs.oldest_age_s, len(idle), len(busy), len(starting))
    raw = scalers.wanted(spec.scaler, spec.target, load)
    reasons = [f"{spec.scaler.value} wants {raw}"]
    waking = obs.queued > 0 and live == 0
    want = max(raw, 1) if waking else raw
    if waking:
        reasons.append("wake: queued work and no worker")
    want = min(max(want, lo), hi)

    # Scale up (rules 4 and 5).
    add = max(0, want - live)
    must = max(0, lo - live, 1 if waking else 0)
    cold = history.cold_start.value if history is not None else None
    execution = history.execution.value if history is not None else None
    if add > must and tuning.predict and cold is not None and execution is not None:
        helpful = _helpful_launches(now, obs.queued, len(idle), starting, busy, cold, execution, add)
        if max(must, helpful) < add:
            reasons.append(
                f"gate: {add - max(must, helpful)} fewer, workers free up before a "
                f"{cold:.1f}s cold start (jobs ~{execution:.1f}s)"
            )
            add = max(must, helpful)
    if (
        add == 0
        and live == 0
        and obs.queued == 0
        and spec.prewarm > 0
        and history is not None
        and cold is not None
        and history.prewarm_pays(now, spec.prewarm, timeout, cold)
    ):
        add = 1
        reasons.append(f"pre-warm: an arrival is likely within {cold + timeout:.0f}s")
    start = max(0, min(add, hi - occupied))
    if start < add:
        reasons.append(f"capped at max_workers={hi}: {add - start} launch(es) wait for a free slot")

    # Scale down (rules 6 and 7).
    by_idle = sorted(idle, key=lambda w: (w.idle_since or 0.0, w.id))
    over_max = max(0, live - hi)
    drain = list(by_idle[:over_max])
    if drain:
        reasons.append(f"over max_workers={hi}: draining {len(drain)} idle")
    surplus = max(0, live - want) - len(drain)
    expired = [w for w in by_idle[over_max:] if now - (w.idle_since or now) > timeout]
    by_timeout = expired[: max(0, surplus)]
    recheck: list[float] = []
    if by_timeout and live - len(drain) - len(by_timeout) == 0 and tuning.keep_warm and history is not None:
        keep = by_timeout[-1]  # the most recently idle of those about to go
        hold_until = (keep.idle_since or now) + timeout + (cold or 0.0)
        if now < hold_until and history.keep_warm_pays(now, hold_until - now, cold or 0.0):
            by_timeout = by_timeout[:-1]
            recheck.append(hold_until + _EPSILON_S)
            reasons.append(f"keep-warm: next job likely within {hold_until - now:.1f}s")
    if (
        by_timeout
        and live - len(drain) - len(by_timeout) == 0
        and spec.prewarm > 0
        and history is not None
        and cold is not None
        and history.prewarm_pays(now, spec.prewarm, timeout, cold)
    ):
        by_timeout = by_timeout[:-1]  # rule 8 would start one again at once: keep this one instead
        reasons.append("pre-warm: keeping the last worker, an arrival is likely")
    drain.extend(by_timeout)
    if by_timeout:
        reasons.append(f"draining {len(by_timeout)} idle > {timeout:g}s")

    # When, absent new input, could this change? An idle worker of the surplus reaching
    # idle_timeout, or a queued job crossing the queue_delay target.
    drained = {w.id for w in drain}
    remaining_surplus = max(0, live - len(drain) - want)
    if remaining_surplus:
        waiting = [w for w in by_idle if w.id not in drained and now - (w.idle_since or now) <= timeout]
        if waiting:
            recheck.append((waiting[0].idle_since or now) + timeout + _EPSILON_S)
    if obs.queued and spec.scaler is ScalerType.QUEUE_DELAY and obs.oldest_age_s <= spec.target:
        recheck.append(now + (spec.target - obs.oldest_age_s) + _EPSILON_S)

    desired = min(max(live - len(drain) + add, lo), hi)
    return ScalingDecision(
        desired=desired,
        start=start,
        drain=tuple(w.id for w in drain),
        reason="; ".join(reasons),
        recheck_at=min(recheck) if recheck else None,
    )


class Autoscaler:
    """Keeps what was learned per endpoint and decides with an injected clock.

    `clock` defaults to `time.time` because worker records carry epoch timestamps; the benchmark
    passes simulated time as `now` instead.
    """

    def __init__(self, clock: Callable[[], float] = time.time, tuning: Tuning | None = None) -> None:
        self._clock = clock
        self.tuning = tuning or Tuning()
        self._history: dict[str, EndpointHistory] = {}

    def history(self, endpoint: str) -> EndpointHistory:
        found = self._history.get(endpoint)
        if found is None:
            found = self._history[endpoint] = EndpointHistory(self.tuning)
        return found

    def decide(self, endpoint: str, spec: ScalingSpec, obs: Observation, now: float | None = None) -> ScalingDecision:
        when = self._clock() if now is None else now
        history = self.history(endpoint)
        history.learn(obs, when)
        return decide(spec, obs, when, history, self.tuning)

    def observe_execution(self, endpoint: str, seconds: float) -> None:
        self.history(endpoint).execution.add(seconds)

    def observe_cold_start(self, endpoint: str, seconds: float) -> None:
        self.history(endpoint).cold_start.add(seconds)

    def forget(self, endpoint: str) -> None:
        """Drop an endpoint's history (endpoint removed)."""
        self._history.pop(endpoint, None)
