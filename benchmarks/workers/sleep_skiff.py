"""Replay worker (Skiff SDK): a cold start drawn from the scaling simulator's distribution, then
each job sleeps input["sleep"] seconds. Logs ready / job start / job end / exit as JSON lines to
$REPLAY_LOG_DIR/<worker id>.jsonl for benchmarks/replay.py.

The cold start counts from the process's own start (/proc), so interpreter and import time are
inside it rather than added to it: the worker only sleeps what is left of its draw.
"""

import asyncio
import atexit
import json
import math
import os
import random
import time
from pathlib import Path

import skiff.serverless

WORKER_ID = os.environ.get("RUNPOD_POD_ID", f"local-{os.getpid()}")
LOG = Path(os.environ["REPLAY_LOG_DIR"]) / f"{WORKER_ID}.jsonl"


def _log(event, **fields):
    with LOG.open("a") as handle:
        handle.write(json.dumps({"ev": event, "t": time.time(), **fields}) + "\n")


def _process_start():
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    boot = next(
        float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime")
    )
    return boot + int(fields[19]) / ticks  # field 22: starttime, in clock ticks since boot


median = float(os.environ.get("REPLAY_COLD_MEDIAN_S", "2.0"))
sigma = float(os.environ.get("REPLAY_COLD_SIGMA", "0.35"))
draw = random.Random(WORKER_ID).lognormvariate(math.log(median), sigma)
started = _process_start()
time.sleep(max(0.0, started + draw - time.time()))
_log("ready", draw=draw, started=started)
atexit.register(lambda: _log("exit"))


async def handler(job):
    _log("start", job=job["id"])
    await asyncio.sleep(float(job["input"].get("sleep", 0)))
    _log("end", job=job["id"])
    return {"ok": True}


skiff.serverless.start({"handler": handler})
