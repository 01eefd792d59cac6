"""Serve jobs from the gateway: fitness checks, then the job loop with its heartbeat, until stopped.

This is where the worker's parts get the one config object they share: the job loop, the
heartbeat and progress updates all receive the same `GatewayConfig`.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from skiff.worker import progress
from skiff.worker.config import GatewayConfig
from skiff.worker.fitness import run_fitness_checks
from skiff.worker.heartbeat import Heartbeat
from skiff.worker.log import log
from skiff.worker.loop import WorkerLoop, WorkerOptions
from skiff.worker.transport import aiohttp_missing, safe_url


def run_worker(config: dict[str, Any], gateway: GatewayConfig) -> int:
    """Run the loop until SIGTERM/SIGINT or refresh_worker; returns the process exit code.

    Raises ValueError when `config` (what start() was given) is not usable.
    """
    options = WorkerOptions.from_config(config)
    missing = aiohttp_missing()
    if missing is not None:
        log.error(missing)
        return 1

    async def main() -> bool:
        await run_fitness_checks()
        loop = WorkerLoop(options, gateway, progress.connect(gateway))
        heartbeat = Heartbeat(gateway, loop.job_ids) if Heartbeat.wanted(gateway) else None
        if heartbeat is not None:
            heartbeat.start()
        log.info(f"Worker {gateway.worker_id} taking jobs from {safe_url(gateway.take_url)}.")
        try:
            await loop.run()
        finally:
            if heartbeat is not None:
                heartbeat.stop()
        return loop.forced

    forced = asyncio.run(main())
    log.info("Worker stopped.")
    if forced:
        # Threads still running a stopped sync handler would block interpreter exit.
        sys.stdout.flush()
        os._exit(1)
    return 0
