"""The embedded queue and store shared by several real processes on one SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.queue.sqlite import SqliteQueue
from skiff_core.store.sqlite import SqliteStore

REPO = Path(__file__).resolve().parents[2]

# Each child process runs one role against the file and prints its results as one JSON line.
CHILD = r"""
import asyncio, json, os, random, sys, time
from pathlib import Path
from skiff_core.jobs import JobRecord, JobStatus
from skiff_core.queue.sqlite import SqliteQueue
from skiff_core.store.sqlite import SqliteStore

role, args = sys.argv[1], json.loads(sys.argv[2])
db = Path(args["db"])


async def produce():
    queue = SqliteQueue(db)
    for i in range(args["n"]):
        await queue.enqueue("mp", f"{args['prefix']}-{i}")
    await queue.close()
    return None


async def produce_then_hang():
    queue, store = SqliteQueue(db), SqliteStore(db)
    for i in range(args["n"]):
        await store.create(JobRecord(id=f"job-{i}", endpoint="mp"))
        await queue.enqueue("mp", f"job-{i}")
        print(f"acked job-{i}", flush=True)  # what the gateway would answer the client now
    await asyncio.sleep(3600)


async def consume():
    queue = SqliteQueue(db)
    got = []
    if args.get("abandon"):
        # Take some messages under a short lease and die without acknowledging them.
        abandoned = await queue.receive("mp", max_messages=args["abandon"], lease=1, wait=10)
        print(json.dumps({"abandoned": [d.job_id for d in abandoned]}), flush=True)
        os._exit(0)
    done = Path(args["done"])
    while True:
        deliveries = await queue.receive("mp", max_messages=5, lease=30, wait=0.2)
        for d in deliveries:
            got.append([d.job_id, d.receive_count])
            await queue.delete("mp", d.receipt)
        if not deliveries and done.exists():
            stats = await queue.stats("mp")
            if stats.queued == 0 and stats.in_flight == 0:
                break
    await queue.close()
    return {"got": got}


async def race():
    store = SqliteStore(db)
    ids = list(args["ids"])
    random.Random(args["me"]).shuffle(ids)
    while time.time() < args["start_at"]:
        await asyncio.sleep(0.001)
    won = []
    for job_id in ids:
        job = await store.transition(
            job_id, expect={JobStatus.IN_PROGRESS}, status=JobStatus.COMPLETED, output=args["me"]
        )
        if job is not None:
            won.append(job_id)
    await store.close()
    return {"won": won}


async def poke():
    queue, store = SqliteQueue(db), SqliteStore(db)
    await queue.enqueue("mp", "poked")
    await store.transition(args["job"], expect={JobStatus.IN_QUEUE}, status=JobStatus.COMPLETED, output="x")
    await queue.close()
    await store.close()
    return None


print(json.dumps(asyncio.run(globals()[role]())), flush=True)
"""


def spawn(role: str, **args: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, role, json.dumps(args)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def result(proc: subprocess.Popen[str], timeout: float = 90) -> Any:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {err}"
    return json.loads(out.strip().splitlines()[-1])


async def test_processes_share_one_queue_without_loss_or_double_delivery(tmp_path: Path) -> None:
    db = tmp_path / "skiff.db"
    done = tmp_path / "producers-done"
    queue = SqliteQueue(db)
    for i in range(5):
        await queue.enqueue("mp", f"a-{i}")
    # A consumer takes these under a 1 s lease and dies without acknowledging them.
    abandoned = result(spawn("consume", db=str(db), abandon=5))["abandoned"]
    assert sorted(abandoned) == [f"a-{i}" for i in range(5)]
    producers = [spawn("produce", db=str(db), prefix=f"p{i}", n=150) for i in range(3)]
    consumers = [spawn("consume", db=str(db), done=str(done)) for _ in range(3)]
    for proc in producers:
        assert result(proc) is None
    done.touch()
    deliveries = [tuple(d) for proc in consumers for d in result(proc)["got"]]

    expected = {f"p{p}-{i}" for p in range(3) for i in range(150)} | set(abandoned)
    times = Counter(job_id for job_id, _ in deliveries)
    assert set(times) == expected, f"lost: {sorted(expected - set(times))[:10]}"
    assert [job_id for job_id, n in times.items() if n > 1] == [], "delivered twice while leased"
    counts = dict(deliveries)
    # The messages the dead process held came back, once, after their lease ran out.
    assert {counts[job_id] for job_id in abandoned} == {2}
    assert {n for job_id, n in deliveries if job_id not in abandoned} == {1}
    stats = await queue.stats("mp")
    assert (stats.queued, stats.in_flight) == (0, 0)
    await queue.close()


async def test_exactly_one_completion_wins_across_processes(tmp_path: Path) -> None:
    db = tmp_path / "skiff.db"
    store = SqliteStore(db)
    ids = [f"job-{i}" for i in range(60)]
    for job_id in ids:
        await store.create(JobRecord(id=job_id, endpoint="mp", status=JobStatus.IN_PROGRESS))
    start_at = time.time() + 2.0  # after the children have imported and opened the file
    racers = [spawn("race", db=str(db), ids=ids, me=me, start_at=start_at) for me in range(4)]
    won = {me: result(proc)["won"] for me, proc in enumerate(racers)}

    winners = Counter(job_id for job_ids in won.values() for job_id in job_ids)
    assert winners == dict.fromkeys(ids, 1)
    for me, job_ids in won.items():
        for job_id in job_ids:
            job = await store.get(job_id)
            assert job is not None and (job.status, job.output) == (JobStatus.COMPLETED, me)
    await store.close()


async def test_long_polls_see_writes_of_other_processes(tmp_path: Path) -> None:
    db = tmp_path / "skiff.db"
    queue, store = SqliteQueue(db), SqliteStore(db)
    await store.create(JobRecord(id="job-1", endpoint="mp"))
    receiving = asyncio.create_task(queue.receive("mp", max_messages=1, lease=30, wait=60))
    finishing = asyncio.create_task(store.wait_final("job-1", timeout=60))
    await asyncio.sleep(0.2)
    poker = spawn("poke", db=str(db), job="job-1")
    deliveries, final = await asyncio.wait_for(asyncio.gather(receiving, finishing), timeout=30)
    assert result(poker) is None
    assert [d.job_id for d in deliveries] == ["poked"]
    assert final is not None and (final.status, final.output) == (JobStatus.COMPLETED, "x")
    await queue.close()
    await store.close()


async def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "skiff.db"
    proc = spawn("produce_then_hang", db=str(db), n=200)
    assert proc.stdout is not None
    acked = [proc.stdout.readline().split()[-1] for _ in range(200)]
    proc.kill()  # SIGKILL: no clean shutdown, no checkpoint
    proc.wait(timeout=30)
    assert proc.returncode == -9
    queue, store = SqliteQueue(db), SqliteStore(db)
    assert (await queue.stats("mp")).queued == 200
    assert [await store.get(job_id) is not None for job_id in acked] == [True] * 200
    await queue.close()
    await store.close()
