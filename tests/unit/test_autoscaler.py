"""The autoscaling policy: each rule on its own, then invariants over random observations."""

from __future__ import annotations

import random

import pytest

from skiff_controller import scalers
from skiff_controller.autoscaler import (
    Autoscaler,
    EndpointHistory,
    Observation,
    ScalingDecision,
    Tuning,
    WorkerView,
    decide,
)
from skiff_core.jobs import WorkerRecord, WorkerState
from skiff_core.spec import ScalerType, ScalingSpec

NOW = 1_000.0
S = WorkerState


def spec(**kw: object) -> ScalingSpec:
    base: dict[str, object] = {"min_workers": 0, "max_workers": 5, "idle_timeout": 5.0}
    base.update(kw)
    return ScalingSpec.model_validate(base)


def rc(target: float = 1, **kw: object) -> ScalingSpec:
    return spec(scaler="request_count", target=target, **kw)


def idle(wid: str, for_s: float) -> WorkerView:
    return WorkerView(wid, S.IDLE, NOW - 100, ready_at=NOW - 98, idle_since=NOW - for_s)


def busy(wid: str, for_s: float = 0.0) -> WorkerView:
    return WorkerView(wid, S.RUNNING, NOW - 100, ready_at=NOW - 98, busy_since=NOW - for_s)


def starting(wid: str, for_s: float = 0.5) -> WorkerView:
    return WorkerView(wid, S.INITIALIZING, NOW - for_s)


def obs(queued: int = 0, workers: list[WorkerView] | None = None, oldest: float = 0.0, **kw: object) -> Observation:
    workers = workers or []
    in_progress = sum(1 for w in workers if w.state is S.RUNNING)
    return Observation(queued, in_progress, oldest if queued else 0.0, workers, **kw)  # type: ignore[arg-type]


def learned(cold: float, execution: float, tuning: Tuning | None = None) -> EndpointHistory:
    history = EndpointHistory(tuning or Tuning())
    history.cold_start.add(cold)
    history.execution.add(execution)
    return history


# -- scaler arithmetic ------------------------------------------------------------------------


def test_request_count_is_ceil_of_jobs_per_target() -> None:
    load = scalers.Load(queued=9, in_progress=0, oldest_age_s=1, idle=0, busy=0, starting=0)
    assert scalers.request_count(load, 4) == 3
    assert scalers.request_count(scalers.Load(5, 3, 0, 0, 3, 0), 4) == 2
    # Float targets must not round up an exact quotient: 7 / 0.7 is 10, not 11.
    assert scalers.request_count(scalers.Load(7, 0, 0, 0, 0, 0), 0.7) == 10
    assert scalers.request_count(scalers.Load(5, 0, 0, 0, 0, 0), 2.5) == 2
    assert scalers.request_count(scalers.Load(0, 0, 0, 0, 0, 0), 1) == 0


def test_queue_delay_adds_only_for_jobs_waiting_past_target() -> None:
    # One busy worker, 4 jobs queued, oldest 2 s < target 4 s: hold.
    assert scalers.queue_delay(scalers.Load(4, 1, 2.0, 0, 1, 0), 4) == 1
    # Oldest 8 s: half the (evenly spread) queue has waited > 4 s -> 2 more workers.
    assert scalers.overdue_jobs(scalers.Load(4, 1, 8.0, 0, 1, 0), 4) == 2
    assert scalers.queue_delay(scalers.Load(4, 1, 8.0, 0, 1, 0), 4) == 3
    # A starting worker already covers one overdue job.
    assert scalers.queue_delay(scalers.Load(4, 1, 8.0, 0, 1, 1), 4) == 3
    # Nothing queued: only busy and starting workers are wanted, idle ones are surplus.
    assert scalers.queue_delay(scalers.Load(0, 2, 0.0, 3, 2, 1), 4) == 3


def test_queue_delay_and_request_count_differ_on_the_same_queue() -> None:
    workers = [busy("b1", 0.5)]
    queue = obs(queued=6, workers=workers, oldest=1.0)
    by_count = decide(rc(1, max_workers=10), queue, NOW)
    by_delay = decide(spec(scaler="queue_delay", target=4, max_workers=10), queue, NOW)
    assert (by_count.start, by_count.desired) == (6, 7)  # ceil((6 + 1) / 1) = 7 workers
    assert (by_delay.start, by_delay.desired) == (0, 1)  # nobody has waited 4 s yet
    # ...and queue_delay asks to be called again when the oldest job crosses its target.
    assert by_delay.recheck_at == pytest.approx(NOW + 3.0, abs=1e-3)
    later = decide(spec(scaler="queue_delay", target=4, max_workers=10), obs(6, workers, oldest=4.5), NOW)
    assert later.start == 1  # ceil(6 * 0.5 / 4.5) = 1 overdue job


# -- the rules ---------------------------------------------------------------------------------


def test_burst_scales_zero_to_max() -> None:
    decision = decide(rc(1, max_workers=5), obs(queued=20, enqueue=True), NOW)
    assert decision.start == 5
    assert decision.desired == 5
    assert decision.drain == ()


def test_wake_on_enqueue_with_zero_workers_even_below_queue_delay_target() -> None:
    decision = decide(spec(scaler="queue_delay", target=4), obs(queued=1, oldest=0.0, enqueue=True), NOW)
    assert decision.start == 1
    assert "wake" in decision.reason
    # The learned gate cannot talk the wake-up worker away: there is no capacity at all.
    gated = decide(rc(1), obs(queued=1, enqueue=True), NOW, learned(cold=30.0, execution=0.1))
    assert gated.start == 1


def test_wake_counts_draining_and_unhealthy_workers_as_no_capacity() -> None:
    leaving = [
        WorkerView("d", S.DRAINING, NOW - 50, ready_at=NOW - 48, busy_since=NOW - 1),
        WorkerView("u", S.UNHEALTHY, NOW - 50),
    ]
    decision = decide(spec(scaler="queue_delay"), obs(queued=1, workers=leaving), NOW)
    assert decision.start == 1


def test_back_to_zero_only_after_idle_timeout() -> None:
    workers = [idle("a", 4.9), idle("b", 3.0)]
    early = decide(rc(1), obs(workers=workers), NOW)
    assert early.drain == ()
    assert early.desired == 2
    # The decision says when to look again: when "a" has been idle for longer than 5 s.
    assert early.recheck_at == pytest.approx(NOW + 0.1, abs=1e-3)
    at = early.recheck_at
    assert at is not None
    then = decide(rc(1), obs(workers=workers), at)
    assert then.drain == ("a",)
    after = decide(rc(1), obs(workers=workers), NOW + 2.5)
    assert set(after.drain) == {"a", "b"}
    assert after.desired == 0
    assert after.start == 0


def test_min_workers_kept_and_started() -> None:
    workers = [idle("old", 60), idle("mid", 30), idle("new", 10)]
    decision = decide(rc(1, min_workers=2), obs(workers=workers), NOW)
    assert decision.drain == ("old",)
    assert decision.desired == 2
    cold = decide(rc(1, min_workers=2), obs(), NOW)
    assert (cold.start, cold.desired) == (2, 2)


def test_max_workers_never_exceeded_counting_starting_draining_and_unhealthy() -> None:
    workers = [starting("s1"), starting("s2"), busy("b1")]
    decision = decide(rc(1, max_workers=4), obs(queued=10, workers=workers), NOW)
    assert decision.start == 1
    assert decision.desired == 4
    leaving = [*workers, WorkerView("d", S.DRAINING, NOW - 9, busy_since=NOW - 1), WorkerView("u", S.UNHEALTHY, 0)]
    capped = decide(rc(1, max_workers=4), obs(queued=10, workers=leaving), NOW)
    assert capped.start == 0
    assert "capped" in capped.reason


def test_lowered_max_drains_idle_above_it_at_once_but_never_busy() -> None:
    workers = [idle("i1", 1.0), idle("i2", 2.0), busy("b1"), busy("b2")]
    decision = decide(rc(1, max_workers=2), obs(workers=workers), NOW)
    assert set(decision.drain) == {"i1", "i2"}
    all_busy = [busy("b1"), busy("b2"), busy("b3")]
    assert decide(rc(1, max_workers=2), obs(workers=all_busy), NOW).drain == ()


def test_busy_and_starting_workers_are_never_drained() -> None:
    workers = [busy("b", 100), starting("s", 100), idle("i", 100)]
    decision = decide(rc(1), obs(workers=workers), NOW)
    assert decision.drain == ("i",)
    assert decision.desired == 2


def test_longest_idle_is_drained_first() -> None:
    workers = [idle("w1", 6), idle("w2", 50), idle("w3", 20), busy("b")]
    # One job in progress, one queued on its way to an idle worker: request_count wants 2.
    decision = decide(rc(1), obs(queued=1, workers=workers, oldest=0.1), NOW)
    assert decision.drain == ("w2", "w3")


def test_gate_skips_a_launch_when_a_busy_worker_frees_sooner_than_a_cold_start() -> None:
    history = learned(cold=2.0, execution=0.5)
    one_job = decide(rc(1), obs(queued=1, workers=[busy("b", 0.1)]), NOW, history)
    assert one_job.start == 0
    assert "gate" in one_job.reason
    # Without learned times the scaler is trusted: request_count asks for a second worker.
    assert decide(rc(1), obs(queued=1, workers=[busy("b", 0.1)]), NOW).start == 1
    # A long queue still gets workers: 10 jobs of 0.5 s are more than the busy worker clears in 2 s.
    many = decide(rc(1, max_workers=10), obs(queued=10, workers=[busy("b", 0.1)]), NOW, history)
    assert 0 < many.start < 10
    # A job overrunning its mean by more than a cold start no longer holds launches back.
    overrun = decide(rc(1), obs(queued=1, workers=[busy("b", 3.0)]), NOW, history)
    assert overrun.start == 1
    off = learned(cold=2.0, execution=0.5, tuning=Tuning(predict=False))
    assert decide(rc(1), obs(queued=1, workers=[busy("b", 0.1)]), NOW, off).start == 1


def test_gate_never_holds_back_the_min_workers_floor() -> None:
    history = learned(cold=60.0, execution=0.01)
    decision = decide(rc(1, min_workers=3), obs(queued=1, workers=[busy("b")]), NOW, history)
    assert decision.start == 2


def _periodic_history(period: float, cold: float = 2.0) -> tuple[Autoscaler, float]:
    """An autoscaler that has seen jobs arrive every `period` seconds; returns the last arrival."""
    scaler = Autoscaler(clock=lambda: 0.0)
    history = scaler.history("e")
    history.cold_start.add(cold)
    t = NOW - 10 * period
    for _ in range(10):
        scaler.decide("e", rc(1), obs(queued=1, workers=[busy("b")], oldest=0.0, enqueue=True), now=t)
        t += period
    return scaler, t - period


def test_keep_warm_holds_the_last_worker_when_the_next_job_is_due_within_a_cold_start() -> None:
    scaler, last = _periodic_history(period=6.5)
    worker = [WorkerView("w", S.IDLE, last - 30, ready_at=last - 28, idle_since=last + 0.5)]
    # 5.7 s idle, 6.2 s since the last arrival: the next one is due in ~0.3 s.
    now = last + 6.2
    kept = scaler.decide("e", rc(1), obs(workers=worker), now=now)
    assert kept.drain == ()
    assert "keep-warm" in kept.reason
    # Bounded: idle_timeout + the cold-start EWMA (2 s) after it went idle, it goes regardless.
    assert kept.recheck_at == pytest.approx(last + 0.5 + 5.0 + 2.0, abs=1e-3)
    gone = scaler.decide("e", rc(1), obs(workers=worker), now=last + 0.5 + 7.01)
    assert gone.drain == ("w",)
    plain = Autoscaler(clock=lambda: 0.0, tuning=Tuning(keep_warm=False))
    assert plain.decide("e", rc(1), obs(workers=worker), now=now).drain == ("w",)


def test_keep_warm_does_not_fire_for_long_gaps_or_bursts() -> None:
    scaler, last = _periodic_history(period=40.0)
    worker = [WorkerView("w", S.IDLE, last - 30, ready_at=last - 28, idle_since=last + 0.5)]
    assert scaler.decide("e", rc(1), obs(workers=worker), now=last + 6.0).drain == ("w",)
    burst, last = _periodic_history(period=0.05)
    assert burst.decide("e", rc(1), obs(workers=worker), now=last + 6.0).drain == ("w",)


def test_keep_warm_never_applies_while_other_workers_stay() -> None:
    scaler, last = _periodic_history(period=6.5)
    workers = [
        WorkerView("w1", S.IDLE, last - 30, ready_at=last - 28, idle_since=last + 0.2),
        WorkerView("w2", S.IDLE, last - 30, ready_at=last - 28, idle_since=last + 0.5),
    ]
    decision = scaler.decide("e", rc(1, min_workers=1), obs(workers=workers), now=last + 6.2)
    assert decision.drain == ("w1",)


def test_history_learns_cold_starts_and_execution_times_from_observations() -> None:
    scaler = Autoscaler(clock=lambda: NOW)
    launched = WorkerView("w", S.INITIALIZING, 100.0)
    scaler.decide("e", rc(1), obs(queued=1, workers=[launched]))
    running = WorkerView("w", S.RUNNING, 100.0, ready_at=103.0, busy_since=103.0)
    scaler.decide("e", rc(1), obs(workers=[running]))
    done = WorkerView("w", S.IDLE, 100.0, ready_at=103.0, idle_since=104.5)
    scaler.decide("e", rc(1), obs(workers=[done]))
    history = scaler.history("e")
    assert history.cold_start.value == pytest.approx(3.0)
    assert history.execution.value == pytest.approx(1.5)
    # The same worker seen again does not count its cold start twice.
    scaler.decide("e", rc(1), obs(workers=[done]))
    assert history.cold_start.value == pytest.approx(3.0)


def test_injected_clock_is_used_when_no_time_is_given() -> None:
    clock = [NOW]
    scaler = Autoscaler(clock=lambda: clock[0])
    workers = [idle("w", 4.0)]
    assert scaler.decide("e", rc(1), obs(workers=workers)).drain == ()
    clock[0] = NOW + 2.0
    assert scaler.decide("e", rc(1), obs(workers=workers)).drain == ("w",)


def test_worker_view_from_record() -> None:
    record = WorkerRecord(
        id="w", endpoint="e", state=S.IDLE, launched_at=10.0, first_take_at=12.0, idle_since=20.0, last_seen_at=21.0
    )
    view = WorkerView.from_record(record)
    assert (view.state, view.ready_at, view.idle_since) == (S.IDLE, 12.0, 20.0)
    draining = record.model_copy(update={"draining": True})
    assert WorkerView.from_record(draining).state is S.DRAINING
    no_since = record.model_copy(update={"idle_since": None})
    assert WorkerView.from_record(no_since).idle_since == 21.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"queued": -1, "in_progress": 0, "oldest_age_s": 0.0}, "queued must be >= 0"),
        ({"queued": 0, "in_progress": 0, "oldest_age_s": -2.0}, "oldest_age_s must be >= 0"),
        (
            {"queued": 0, "in_progress": 0, "oldest_age_s": 0.0, "workers": [idle("w", 1), idle("w", 2)]},
            "same worker id twice",
        ),
        (
            {"queued": 0, "in_progress": 0, "oldest_age_s": 0.0, "workers": [WorkerView("w", S.IDLE, 0.0)]},
            "no idle_since",
        ),
    ],
)
def test_bad_observations_are_rejected_with_a_clear_message(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Observation(**kwargs)  # type: ignore[arg-type]


# -- invariants over random observations -------------------------------------------------------


def _random_case(rng: random.Random) -> tuple[ScalingSpec, Observation, float]:
    hi = rng.randint(1, 8)
    scaling = ScalingSpec(
        min_workers=rng.randint(0, hi),
        max_workers=hi,
        idle_timeout=rng.choice([0.0, 1.0, 5.0, 30.0]),
        scaler=rng.choice(list(ScalerType)),
        target=rng.choice([0.5, 1, 2, 4, 7.5]),
    )
    now = rng.uniform(1_000, 2_000)
    workers: list[WorkerView] = []
    for i in range(rng.randint(0, hi + 3)):  # sometimes more than max: max was lowered
        state = rng.choice(list(S))
        launched = now - rng.uniform(0, 120)
        ready = None if state is S.INITIALIZING else launched + rng.uniform(0, 5)
        workers.append(
            WorkerView(
                f"w{i}",
                state,
                launched,
                ready_at=ready,
                idle_since=now - rng.choice([0.0, rng.uniform(0, 60)]) if state is S.IDLE else None,
                busy_since=now - rng.uniform(0, 30) if state is S.RUNNING and rng.random() < 0.8 else None,
            )
        )
    queued = rng.choice([0, 0, 1, 2, 5, 40])
    in_progress = sum(1 for w in workers if w.state is S.RUNNING)
    oldest = rng.uniform(0, 20) if queued else 0.0
    return scaling, Observation(queued, in_progress, oldest, workers, enqueue=rng.random() < 0.3), now


def _check_invariants(scaling: ScalingSpec, o: Observation, now: float, d: ScalingDecision) -> None:
    by_id = {w.id: w for w in o.workers}
    live = [w for w in o.workers if w.state in (S.INITIALIZING, S.IDLE, S.RUNNING)]
    lo, hi = scaling.min_workers, scaling.max_workers
    context = f"{scaling!r} {o!r} now={now} -> {d!r}"
    assert lo <= d.desired <= hi, context
    assert d.start >= 0, context
    assert d.start == 0 or len(o.workers) + d.start <= hi, context
    assert len(set(d.drain)) == len(d.drain), context
    drained = [by_id[i] for i in d.drain]
    assert all(w.state is S.IDLE for w in drained), context  # never busy, starting, ...
    remaining = len(live) - len(drained)
    assert remaining >= min(lo, len(live)), context  # never drains below min_workers
    over_max = max(0, len(live) - hi)
    for w in drained[over_max:]:  # beyond a lowered max, only workers idle past idle_timeout
        assert w.idle_since is not None and now - w.idle_since > scaling.idle_timeout, context
    # Longest idle first: nobody kept is idle for longer than somebody drained for timeout.
    kept_idle = [w for w in live if w.state is S.IDLE and w.id not in d.drain]
    if drained and kept_idle:
        newest_drained = max(w.idle_since or 0.0 for w in drained)
        assert all((w.idle_since or 0.0) >= newest_drained for w in kept_idle), context
    if o.queued and not live and len(o.workers) < hi:
        assert d.start >= 1, context  # wake on enqueue
    if len(o.workers) < hi and len(live) < lo:
        assert d.start >= min(lo - len(live), hi - len(o.workers)), context
    assert d.recheck_at is None or d.recheck_at > now, context
    assert d.reason, context


def test_invariants_hold_over_random_observations() -> None:
    rng = random.Random(20261125)
    for _ in range(3000):
        scaling, o, now = _random_case(rng)
        tuning = Tuning(predict=rng.random() < 0.7, keep_warm=rng.random() < 0.7)
        history = None
        if rng.random() < 0.7:
            history = learned(cold=rng.uniform(0.1, 10), execution=rng.uniform(0.01, 20), tuning=tuning)
            for _ in range(rng.randint(0, 12)):
                history.gaps.append(rng.choice([rng.uniform(0, 2), rng.uniform(4, 9), rng.uniform(20, 90)]))
            history.last_arrival = now - rng.uniform(0, 30)
        _check_invariants(scaling, o, now, decide(scaling, o, now, history, tuning))


def test_invariants_hold_along_random_histories_of_one_stateful_autoscaler() -> None:
    # Worker ids repeat across passes with arbitrary state changes and time may even go backwards:
    # whatever the learned history then holds, every decision keeps the invariants.
    rng = random.Random(7)
    scaler = Autoscaler(clock=lambda: 0.0)
    for _ in range(2000):
        scaling, o, now = _random_case(rng)
        decision = scaler.decide(rng.choice(["a", "b"]), scaling, o, now=now)
        _check_invariants(scaling, o, now, decision)


def _arrivals(gap: float, count: int = 10) -> tuple[EndpointHistory, float]:
    """A history that saw `count` arrivals `gap` seconds apart and a 2 s cold start (keep-warm,
    rule 7, off: only rule 8 keeps a worker)."""
    history = learned(cold=2.0, execution=1.0, tuning=Tuning(keep_warm=False))
    at = NOW - gap * count
    for _ in range(count):
        history.learn(obs(enqueue=True), at)
        at += gap
    return history, at - gap


def test_prewarm_starts_a_worker_ahead_of_a_likely_arrival_and_not_of_an_unlikely_one() -> None:
    frequent, last = _arrivals(gap=8.0)
    now = last + 1.0  # no worker up, nothing queued: only rule 8 can start one
    on = decide(rc(1, prewarm=5.0), obs(), now, frequent)
    assert on.start == 1 and "pre-warm" in on.reason
    assert decide(rc(1), obs(), now, frequent).start == 0  # off by default
    rare, last = _arrivals(gap=600.0)
    assert decide(rc(1, prewarm=5.0), obs(), last + 1.0, rare).start == 0
    # The knob is the trade-off: a small one does not pay for the idle time.
    assert decide(rc(1, prewarm=1.0), obs(), now, frequent).start == 0


def test_prewarm_keeps_the_last_idle_worker_instead_of_stopping_and_restarting_it() -> None:
    history, last = _arrivals(gap=8.0)
    now = last + 7.0
    worker = [WorkerView("w", S.IDLE, now - 30, ready_at=now - 28, idle_since=now - 6.0)]  # past idle_timeout
    kept = decide(rc(1, prewarm=5.0), obs(workers=worker), now, history)
    assert kept.drain == () and kept.start == 0
    assert decide(rc(1), obs(workers=worker), now, history).drain == ("w",)
