"""Big payloads: a 5 MB input and a 15 MB output round-trip through /runsync, in the embedded mode
(SQLite + payload files) and in the cluster mode (SQS + Redis + S3, on moto and a private
redis-server); the record carries a reference, the worker and the client see the real values, and
the payloads go when the job's record goes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from skiff_core.catalog import EndpointCatalog
from skiff_core.config import Settings
from skiff_core.jobs import JobStatus
from skiff_core.keys import KeyRing
from skiff_core.payloads.base import PAYLOAD_KEY
from skiff_core.payloads.files import FilePayloads
from skiff_core.queue.sqlite import SqliteQueue
from skiff_core.spec import EndpointSpec, EndpointType
from skiff_core.store.sqlite import SqliteStore
from skiff_gateway.context import GatewayContext
from tests.support.services import MotoServer, RedisServer
from tests.support.stack import SkiffProcess, endpoint_hcl

INPUT_BYTES = 5 * 1024 * 1024
OUTPUT_BYTES = 15 * 1024 * 1024
BIG_ECHO = "tests/workers/big_echo.py"


def _big_request() -> tuple[dict[str, Any], str]:
    blob = "b" * INPUT_BYTES
    return {"input": {"blob": blob, "size": OUTPUT_BYTES}}, hashlib.sha256(blob.encode()).hexdigest()


def _round_trip(stack: SkiffProcess) -> str:
    """/runsync with a 5 MB input asking for a 15 MB output; checks both arrived whole; the job id."""
    request, digest = _big_request()
    with stack.client(timeout=120) as client:
        body = client.post("/v2/big/runsync?wait=120000", json=request).json()
        assert body["status"] == "COMPLETED", {k: v for k, v in body.items() if k != "output"}
        output = body["output"]
        # The worker received the whole input, not a reference to it ...
        assert output["blob_length"] == INPUT_BYTES and output["blob_sha256"] == digest
        # ... and the client the whole output.
        assert output["data"] == "x" * OUTPUT_BYTES
        # /status reads the stored output back too.
        again = client.get(f"/v2/big/status/{body['id']}").json()
        assert again["status"] == "COMPLETED" and len(again["output"]["data"]) == OUTPUT_BYTES
        small = client.post("/v2/big/runsync?wait=60000", json={"input": {"blob": "tiny", "size": 3}}).json()
        assert small["status"] == "COMPLETED" and small["output"]["data"] == "xxx"
    job_id: str = body["id"]
    return job_id


def test_embedded_mode_round_trips_5mb_in_15mb_out(skiff_stack: Callable[..., SkiffProcess]) -> None:
    stack = skiff_stack({"big": endpoint_hcl("big", BIG_ECHO, scaling={"min_workers": 1})})
    stack.wait_ready_workers("big")
    job_id = _round_trip(stack)
    # Both went through the payload files, not the SQLite record.
    stored = stack.state_dir / "payloads" / job_id
    assert (stored / "input.json").stat().st_size > INPUT_BYTES
    assert (stored / "output.json").stat().st_size > OUTPUT_BYTES
    # Small jobs never touch the payload store.
    assert [p.name for p in (stack.state_dir / "payloads").iterdir()] == [job_id]


def test_cluster_mode_round_trips_5mb_in_15mb_out(
    skiff_stack: Callable[..., SkiffProcess], moto: MotoServer, redis: RedisServer, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    bucket = f"skiff-big-{run}"
    env = {
        **moto.env,
        "SKIFF_QUEUE": "sqs",
        "SKIFF_STORE": "redis",
        "SKIFF_PAYLOADS": "s3",
        "SKIFF_S3_BUCKET": bucket,
        "SKIFF_REDIS_URL": redis.url(),
        "SKIFF_REDIS_PREFIX": f"big{run}:",
        "SKIFF_SQS_QUEUE_PREFIX": f"big{run}-",
    }
    stack = skiff_stack({"big": endpoint_hcl("big", BIG_ECHO, scaling={"min_workers": 1})}, env)
    stack.wait_ready_workers("big", timeout=60)
    job_id = _round_trip(stack)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    sizes = {
        obj["Key"]: obj["Size"] for obj in s3.list_objects_v2(Bucket=bucket, Prefix="payloads/").get("Contents", [])
    }
    assert sizes[f"payloads/{job_id}/input.json"] > INPUT_BYTES
    assert sizes[f"payloads/{job_id}/output.json"] > OUTPUT_BYTES
    assert all(key.startswith(f"payloads/{job_id}/") for key in sizes), sizes
    assert not (stack.state_dir / "payloads").exists()


# ---------------------------------------------------------------------------- lifecycle in-process


class _Hooks(ThreadingHTTPServer):
    received: list[dict[str, Any]]


class _HookHandler(BaseHTTPRequestHandler):
    server: _Hooks

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        self.server.received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[_Hooks]:
    server = _Hooks(("127.0.0.1", 0), _HookHandler)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_references_are_resolved_for_the_worker_and_webhook_and_dropped_at_retention(
    tmp_path: Path, webhook_server: _Hooks
) -> None:
    """The JobService over a real SQLite queue/store and real payload files."""
    settings = Settings(state_dir=tmp_path, payload_inline_max_bytes=1024)
    spec = EndpointSpec(name="big", type=EndpointType.QUEUE, command=["true"])
    queue, store = SqliteQueue(tmp_path / "skiff.db"), SqliteStore(tmp_path / "skiff.db")
    payloads = FilePayloads(tmp_path / "payloads")
    ctx = GatewayContext.build(settings, queue, store, EndpointCatalog([spec]), KeyRing("sk_test"), payloads=payloads)
    hook = f"http://127.0.0.1:{webhook_server.server_address[1]}/hook"
    big_in, big_out = {"text": "i" * 4000}, ["o" * 5000]

    async def scenario() -> None:
        await queue.ensure("big", max_receives=3)
        job = await ctx.jobs.submit(spec, {"input": big_in, "webhook": hook}, sync=False)
        small = await ctx.jobs.submit(spec, {"input": {"n": 1}}, sync=False)
        stored = await store.get(job.id)
        assert stored is not None and set(stored.input) == {PAYLOAD_KEY}
        assert (await store.get(small.id)).input == {"n": 1}  # type: ignore[union-attr]

        taken = {j["id"]: j["input"] for j in await ctx.jobs.take(spec, "w1", 2, 1.0)}
        assert taken == {job.id: big_in, small.id: {"n": 1}}
        await ctx.jobs.finish(spec, "w1", job.id, {"output": big_out})
        await ctx.jobs.finish(spec, "w1", small.id, {"output": "ok"})

        stored = await store.get(job.id)
        assert stored is not None and set(stored.output) == {PAYLOAD_KEY}
        assert (await ctx.jobs.get(spec, job.id)).output == big_out
        assert (await ctx.jobs.wait_final(job.id, 1.0)).output == big_out  # type: ignore[union-attr]
        for _ in range(100):
            if webhook_server.received:
                break
            await asyncio.sleep(0.05)
        assert webhook_server.received[0]["output"] == big_out
        assert webhook_server.received[0]["status"] == JobStatus.COMPLETED

        assert (tmp_path / "payloads" / job.id).is_dir()
        # Past the /run retention (30 min) the sweeper drops the records and the payloads with them.
        await ctx.jobs.sweep(ctx.catalog.get, now=stored.deadline_at + 1)
        assert await store.get(job.id) is None and await store.get(small.id) is None
        assert not (tmp_path / "payloads" / job.id).exists()
        await ctx.stop()
        await payloads.close()
        await queue.close()
        await store.close()

    asyncio.run(scenario())


def test_housekeeping_removes_payloads_left_behind_by_a_crash(tmp_path: Path) -> None:
    """A gateway that died between dropping a record and its payloads leaves files behind; the
    next gateway's housekeeping removes those past their expiry and keeps live ones."""
    settings = Settings(state_dir=tmp_path)
    spec = EndpointSpec(name="big", type=EndpointType.QUEUE, command=["true"])
    queue, store = SqliteQueue(tmp_path / "skiff.db"), SqliteStore(tmp_path / "skiff.db")
    payloads = FilePayloads(tmp_path / "payloads")
    ctx = GatewayContext.build(settings, queue, store, EndpointCatalog([spec]), KeyRing("sk_test"), payloads=payloads)

    async def scenario() -> None:
        await queue.ensure("big", max_receives=3)
        orphan = await payloads.put("orphan", "output", b"x" * 10, expires_at=time.time() - 1)
        live = await payloads.put("live", "input", b"y" * 10, expires_at=time.time() + 3600)
        await ctx.housekeeping_pass()
        assert not (tmp_path / "payloads" / "orphan").exists()
        assert await payloads.get(live) == b"y" * 10
        # Not on every pass: the next sweep waits for its interval.
        again = await payloads.put("orphan", "output", b"x", expires_at=time.time() - 1)
        await ctx.housekeeping_pass()
        assert await payloads.get(again) == b"x"
        assert orphan == again
        await ctx.stop()
        await payloads.close()
        await queue.close()
        await store.close()

    asyncio.run(scenario())
