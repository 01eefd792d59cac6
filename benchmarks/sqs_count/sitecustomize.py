"""Counts the SQS requests of every Python process started with this folder on PYTHONPATH.

The gateway benchmark puts it there for the Skiff processes, so Skiff's own code runs unchanged:
Skiff's SQS client (skiff_core.queue.sqs_api.SqsApi) sends each HTTP request, retries included,
through its `_post`, which is wrapped here to count them per action; a daemon thread writes this
process's counts as JSON to $SKIFF_BENCH_SQS_COUNTS/<pid>.json every 50 ms.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

_DIR = os.environ.get("SKIFF_BENCH_SQS_COUNTS")


def _install(folder: Path) -> None:
    try:
        from skiff_core.queue.sqs_api import SqsApi
    except ImportError:  # a process without Skiff's server side (a worker): nothing to count
        return

    counts: Counter[str] = Counter()
    lock = threading.Lock()
    original = SqsApi._post

    async def counted(self: SqsApi, action: str, body: bytes) -> Any:
        with lock:
            counts[action] += 1
        return await original(self, action, body)

    SqsApi._post = counted  # type: ignore[method-assign]
    target = folder / f"{os.getpid()}.json"

    def write() -> None:
        last: dict[str, int] = {}
        while True:
            time.sleep(0.05)
            with lock:
                now = dict(counts)
            if now != last:
                tmp = target.with_suffix(".tmp")
                tmp.write_text(json.dumps(now))
                tmp.replace(target)
                last = now

    threading.Thread(target=write, name="sqs-count", daemon=True).start()


if _DIR:
    _install(Path(_DIR))
