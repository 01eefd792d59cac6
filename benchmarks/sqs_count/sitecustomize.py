"""Counts the SQS requests of every Python process started with this folder on PYTHONPATH.

The gateway benchmark puts it there for the Skiff processes, so Skiff's own code runs unchanged: each
boto3 SQS client gets a botocore `before-send` hook (one event per HTTP request, retries
included), and a daemon thread writes this process's counts per action as JSON to
$SKIFF_BENCH_SQS_COUNTS/<pid>.json every 50 ms.
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
    import botocore.session

    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def count(event_name: str, **_kwargs: Any) -> None:
        with lock:
            counts[event_name.rsplit(".", 1)[-1]] += 1

    original = botocore.session.Session.create_client

    def create_client(self: Any, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = original(self, service_name, *args, **kwargs)
        if service_name == "sqs":
            client.meta.events.register("before-send.sqs", count)
        return client

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
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
