"""Fitness checks: functions that must pass before the worker takes jobs (runpod's rp_fitness.py)."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from skiff.worker.log import log

_fitness_checks: list[Callable[[], Any]] = []


def register_fitness_check(func: Callable[[], Any]) -> Callable[[], Any]:
    """Decorator: run `func` (sync or async) once before the worker takes jobs; if it raises, the
    worker exits 1 so the orchestrator replaces it (runpod's rp_fitness.register_fitness_check)."""
    _fitness_checks.append(func)
    return func


async def run_fitness_checks() -> None:
    for check in list(_fitness_checks):
        name = getattr(check, "__name__", repr(check))
        try:
            returned = check()
            if inspect.isawaitable(returned):
                await returned
        except Exception as err:
            log.error(f"Fitness check {name} failed: {type(err).__name__}: {err}. Exiting.")
            sys.stdout.flush()
            os._exit(1)  # as runpod: non-daemon threads must not keep a broken worker alive
        log.info(f"Fitness check passed: {name}")
