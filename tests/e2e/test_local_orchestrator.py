"""The embedded orchestrator's worker count under scale() calls that land while a launch finishes.

Real subprocesses (a sleeping Python), no gateway: the count is what the orchestrator lists.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from skiff_core.orchestrator.base import WorkerPhase
from skiff_core.orchestrator.local import LocalOrchestrator
from skiff_core.spec import EndpointSpec

SLEEPER = EndpointSpec(name="sleeper", command=[sys.executable, "-c", "import time; time.sleep(120)"])


async def _running(orchestrator: LocalOrchestrator) -> int:
    return sum(1 for w in await orchestrator.workers("sleeper") if w.phase is WorkerPhase.RUNNING)


async def _scale_up_as_each_launch_lands(tmp_path: Path) -> list[int]:
    """Scale 1, 2, 3, 1 and return the running count reached after each call."""
    orchestrator = LocalOrchestrator(
        gateway_url="http://127.0.0.1:9", worker_key=lambda _: "k", state_dir=tmp_path, project_dir=tmp_path
    )
    await orchestrator.apply(SLEEPER)
    reached = []
    try:
        for count in (1, 2, 3, 1):
            await orchestrator.scale("sleeper", count)
            # Poll every loop iteration, so the next scale() lands at the first moment the new
            # worker is listed: the moment a launch's bookkeeping could still count it twice.
            deadline = time.monotonic() + 15
            while await _running(orchestrator) != count and time.monotonic() < deadline:
                await asyncio.sleep(0)
            reached.append(await _running(orchestrator))
    finally:
        await orchestrator.close()
    reached.append(len(await orchestrator.workers("sleeper")))
    return reached


def test_scale_calls_right_after_a_launch_lands_get_every_worker_asked_for(tmp_path: Path) -> None:
    reached = asyncio.run(_scale_up_as_each_launch_lands(tmp_path))
    assert reached == [1, 2, 3, 1, 0], "running workers after scale(1), (2), (3), (1) and close()"


# Notes each SIGTERM in a file and carries on: a worker that will not stop when asked.
STUBBORN = EndpointSpec(
    name="stubborn",
    command=[
        sys.executable,
        "-c",
        "import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: open(os.environ['TERMS'], 'a').write('TERM\\n'))\n"
        "open(os.environ['TERMS'] + '.ready', 'w').close()\n"
        "while True: time.sleep(0.1)\n",
    ],
)


async def _stop_stubborn_workers(tmp_path: Path, how: str) -> tuple[str, int]:
    """Start one stubborn worker, stop it as `how` ("stop" or "kill"); its SIGTERMs and the
    workers left."""
    terms = tmp_path / "terms"
    orchestrator = LocalOrchestrator(
        gateway_url="http://127.0.0.1:9",
        worker_key=lambda _: "k",
        state_dir=tmp_path,
        project_dir=tmp_path,
        stop_grace_s=1.0,
    )
    spec = STUBBORN.model_copy(update={"env": {"TERMS": str(terms)}})
    await orchestrator.apply(spec)
    try:
        await orchestrator.scale("stubborn", 1)
        deadline = time.monotonic() + 15
        while not (tmp_path / "terms.ready").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [worker] = await orchestrator.workers("stubborn")
        await orchestrator.scale("stubborn", 0, **{how: [worker.id]})
        left = len(await orchestrator.workers("stubborn"))
    finally:
        await orchestrator.close()
    return (terms.read_text() if terms.exists() else ""), left


def test_stop_asks_first_and_kill_does_not(tmp_path: Path) -> None:
    """`stop` gives a worker SIGTERM and the grace before SIGKILL; `kill` (a worker that stopped
    pinging or is stuck) goes at once, so its replacement does not wait out the grace."""
    assert asyncio.run(_stop_stubborn_workers(tmp_path / "stop", "stop")) == ("TERM\n", 0)
    assert asyncio.run(_stop_stubborn_workers(tmp_path / "kill", "kill")) == ("", 0)
