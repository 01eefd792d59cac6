"""Big payloads: the file store and the S3 store (moto's real S3 server), and the inline/ref helpers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from skiff_core.backends import build_payloads
from skiff_core.config import Settings
from skiff_core.payloads import PAYLOAD_KEY, PayloadMissing, PayloadStore, dereference, payload_ref, reference
from skiff_core.payloads.files import FilePayloads
from skiff_core.payloads.s3 import TAG_KEY, S3Payloads
from tests.support.services import MotoServer

INLINE_MAX = Settings().payload_inline_max_bytes


def _s3(moto: MotoServer) -> Any:
    return boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")


@pytest.fixture(params=["files", "s3"])
async def payloads(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PayloadStore]:
    store: PayloadStore
    if request.param == "files":
        store = FilePayloads(tmp_path / "payloads")
    else:
        moto = request.getfixturevalue("moto")
        store = S3Payloads(f"b-{tmp_path.name[-20:].lower().replace('_', '-')}", endpoint_url=moto.url)
    assert isinstance(store, PayloadStore)
    yield store
    await store.close()


def _big(size: int) -> dict[str, Any]:
    return {"blob": "x" * size, "nested": {"list": [], "unicode": "héllo ✓"}}


async def test_big_input_and_output_round_trip(payloads: PayloadStore) -> None:
    expires = time.time() + 3600
    big_in, big_out = _big(5 * 1024 * 1024), _big(15 * 1024 * 1024)
    in_value = await reference(payloads, "job-1", "input", big_in, inline_max_bytes=INLINE_MAX, expires_at=expires)
    out_value = await reference(payloads, "job-1", "output", big_out, inline_max_bytes=INLINE_MAX, expires_at=expires)
    assert payload_ref(in_value) and payload_ref(out_value) and payload_ref(in_value) != payload_ref(out_value)
    assert await dereference(payloads, in_value) == big_in
    assert await dereference(payloads, out_value) == big_out


async def test_small_values_stay_inline(payloads: PayloadStore) -> None:
    value = {"prompt": "hi", "n": [1, 2]}
    kept = await reference(payloads, "job-2", "input", value, inline_max_bytes=INLINE_MAX, expires_at=time.time())
    assert kept is value
    assert await dereference(payloads, kept) is value


async def test_small_value_that_looks_like_a_ref_is_stored(payloads: PayloadStore) -> None:
    tricky = {PAYLOAD_KEY: "not really"}
    stored = await reference(payloads, "job-3", "input", tricky, inline_max_bytes=INLINE_MAX, expires_at=time.time())
    assert stored != tricky
    assert await dereference(payloads, stored) == tricky


async def test_delete_removes_every_kind(payloads: PayloadStore) -> None:
    refs = [await payloads.put("job-4", kind, b'"data"', time.time() + 60) for kind in ("input", "output")]
    await payloads.put("job-5", "input", b"1", time.time() + 60)
    await payloads.delete("job-4")
    await payloads.delete("job-4")  # again: nothing left, no error
    for ref in refs:
        with pytest.raises(PayloadMissing):
            await payloads.get(ref)
    assert await payloads.get(await payloads.put("job-5", "input", b"2", time.time() + 60)) == b"2"


async def test_put_replaces(payloads: PayloadStore) -> None:
    await payloads.put("job-6", "output", b"1", time.time() + 60)
    ref = await payloads.put("job-6", "output", b"22", time.time() + 60)
    assert await payloads.get(ref) == b"22"


@pytest.mark.parametrize("job_id", ["../escape", "a/b", ".hidden", ""])
async def test_unsafe_job_ids_are_refused(payloads: PayloadStore, job_id: str) -> None:
    with pytest.raises(ValueError, match="job id"):
        await payloads.put(job_id, "input", b"1", time.time())


async def test_foreign_refs_are_refused(payloads: PayloadStore) -> None:
    with pytest.raises(ValueError, match="not a payload ref"):
        await payloads.get("ftp://elsewhere/thing")


async def test_files_sweep_removes_only_expired(tmp_path: Path) -> None:
    store = FilePayloads(tmp_path)
    old = await store.put("old", "input", b"1", time.time() - 10)
    new = await store.put("new", "input", b"2", time.time() + 3600)
    assert await store.sweep() == 1
    with pytest.raises(PayloadMissing):
        await store.get(old)
    assert await store.get(new) == b"2"
    assert not (tmp_path / "old").exists()


async def test_s3_objects_are_tagged_and_lifecycle_merged(moto: MotoServer) -> None:
    s3 = _s3(moto)
    s3.create_bucket(Bucket="lifecycle")
    user_rule = {"ID": "users-own", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Expiration": {"Days": 3}}
    s3.put_bucket_lifecycle_configuration(Bucket="lifecycle", LifecycleConfiguration={"Rules": [user_rule]})
    store = S3Payloads("lifecycle", endpoint_url=moto.url, prefix="p/")
    try:
        ref = await store.put("job-7", "output", b"{}", time.time() + 3 * 86400)
        await store.put("job-8", "output", b"{}", time.time() + 3 * 86400)  # second put: rules set once
    finally:
        await store.close()
    assert ref == "s3://lifecycle/p/job-7/output.json"
    tags = s3.get_object_tagging(Bucket="lifecycle", Key="p/job-7/output.json")["TagSet"]
    assert tags == [{"Key": TAG_KEY, "Value": "7d"}]
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket="lifecycle")["Rules"]}
    assert "users-own" in rules
    seven = rules["skiff-p/-7d"]
    assert seven["Expiration"]["Days"] == 7
    assert seven["Filter"]["And"]["Tags"] == [{"Key": TAG_KEY, "Value": "7d"}]


async def test_s3_store_creates_a_missing_bucket(moto: MotoServer) -> None:
    store = S3Payloads("made-on-demand", endpoint_url=moto.url)
    try:
        assert await store.get(await store.put("job-9", "input", b"[1]", time.time() + 60)) == b"[1]"
    finally:
        await store.close()
    assert _s3(moto).head_bucket(Bucket="made-on-demand")


def test_build_payloads_follows_settings(tmp_path: Path, moto: MotoServer) -> None:
    assert isinstance(build_payloads(Settings(state_dir=tmp_path)), FilePayloads)
    s3 = build_payloads(Settings(payloads="s3", s3_bucket="b", s3_endpoint_url=moto.url))
    assert isinstance(s3, S3Payloads)
    with pytest.raises(ValueError, match="SKIFF_S3_BUCKET"):
        Settings(payloads="s3")
