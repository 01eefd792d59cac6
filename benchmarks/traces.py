"""Seeded synthetic request traces for the scaling benchmark.

A trace is a list of jobs (arrival time, execution seconds) sorted by arrival. Every generator
takes its own `random.Random(seed)`, so the same seed gives the same trace on any machine.

- bursty: quiet minutes broken by bursts of tens of jobs within a few seconds, plus a trickle.
- diurnal: one day of load compressed into the trace: the rate swings from a trickle at night to
  a sustained peak, as a non-homogeneous Poisson process (Lewis-Shedler thinning).
- sparse: a Poisson trickle, one job every ~30 s on average: each is usually alone.
- periodic: a client calling every ~7.5 s with jitter: after a ~1.5 s job the worker idles a
  little longer than the default 5 s idle_timeout. Not one of the issue's three traces: it is
  the case the keep-warm rule is for, shown so that the rule's effect (and cost) is measured.

Job execution times are lognormal (median `exec_median_s`, shape 0.8: most jobs short, a long tail).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Job:
    arrival: float
    duration: float


@dataclass(frozen=True, slots=True)
class Trace:
    name: str
    jobs: tuple[Job, ...]
    horizon_s: float


EXEC_SIGMA = 0.8


def _duration(rng: random.Random, median: float) -> float:
    return rng.lognormvariate(math.log(median), EXEC_SIGMA)


def bursty(seed: int, horizon_s: float, exec_median_s: float = 1.5) -> Trace:
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = rng.expovariate(1 / 90.0)
    while t < horizon_s:
        size = rng.randint(5, 40)
        arrivals.extend(t + rng.uniform(0.0, 3.0) for _ in range(size))
        t += rng.expovariate(1 / 90.0)
    t = rng.expovariate(1 / 60.0)
    while t < horizon_s:  # background trickle between bursts
        arrivals.append(t)
        t += rng.expovariate(1 / 60.0)
    return _trace("bursty", rng, arrivals, horizon_s, exec_median_s)


def diurnal(seed: int, horizon_s: float, exec_median_s: float = 1.5) -> Trace:
    rng = random.Random(seed)
    low, high = 0.01, 1.5  # jobs per second at night and at the peak

    def rate(t: float) -> float:
        return low + (high - low) * (1 - math.cos(2 * math.pi * t / horizon_s)) / 2

    arrivals: list[float] = []
    t = 0.0
    while True:
        t += rng.expovariate(high)
        if t >= horizon_s:
            break
        if rng.random() < rate(t) / high:
            arrivals.append(t)
    return _trace("diurnal", rng, arrivals, horizon_s, exec_median_s)


def sparse(seed: int, horizon_s: float, exec_median_s: float = 1.5) -> Trace:
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = rng.expovariate(1 / 30.0)
    while t < horizon_s:
        arrivals.append(t)
        t += rng.expovariate(1 / 30.0)
    return _trace("sparse", rng, arrivals, horizon_s, exec_median_s)


def periodic(seed: int, horizon_s: float, exec_median_s: float = 1.5) -> Trace:
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = rng.uniform(0.0, 7.5)
    while t < horizon_s:
        arrivals.append(t)
        t += max(0.1, 7.5 + rng.gauss(0.0, 0.5))  # a timer loop with scheduling jitter
    return _trace("periodic", rng, arrivals, horizon_s, exec_median_s)


def _trace(name: str, rng: random.Random, arrivals: list[float], horizon_s: float, median: float) -> Trace:
    arrivals.sort()
    jobs = tuple(Job(a, _duration(rng, median)) for a in arrivals if 0.0 <= a < horizon_s)
    return Trace(name, jobs, horizon_s)


GENERATORS: dict[str, Callable[[int, float], Trace]] = {
    "bursty": bursty,
    "diurnal": diurnal,
    "sparse": sparse,
    "periodic": periodic,
}
