"""Cluster payload store on S3 or anything speaking its API (MinIO, LocalStack, moto), via boto3.

Objects are `<prefix><job_id>/<kind>.json`. Deleting the job deletes them; as a safety net each
object carries a tag `skiff-expiry=<N>d` and the bucket gets one lifecycle rule per N (merged into
the bucket's existing rules, never replacing them), so a payload whose job was never deleted is
removed by S3 within a day or so of N days after it was written.

AWS references: https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html (Tagging as
a URL query string), API_DeleteObjects.html, API_GetBucketLifecycleConfiguration.html
(NoSuchLifecycleConfiguration when none), API_PutBucketLifecycleConfiguration.html (replaces the
whole configuration, hence the merge), and
https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html (Filter with And
of Prefix and Tags; expiry counted in days, rounded to the next midnight UTC).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from skiff_core.payloads.base import KINDS, PayloadKind, PayloadMissing
from skiff_core.payloads.files import _check_job_id, _check_kind

log = logging.getLogger(__name__)

T = TypeVar("T")

TAG_KEY = "skiff-expiry"
# Lifecycle classes in days. A payload gets the smallest class that outlives its job; past the
# largest it is left to the explicit delete alone.
EXPIRY_CLASSES_DAYS = (1, 2, 7, 30, 90, 365)


def expiry_class(expires_at: float, now: float) -> int | None:
    # +1: S3 rounds expiry to the next midnight UTC and runs lifecycle about once a day.
    needed = math.ceil(max(0.0, expires_at - now) / 86400) + 1
    return next((days for days in EXPIRY_CLASSES_DAYS if days >= needed), None)


class S3Payloads:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "payloads/",
        manage_lifecycle: bool = True,
        max_connections: int = 32,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 bucket name is required for S3 payloads (SKIFF_S3_BUCKET)")
        self._bucket = bucket
        self._prefix = prefix
        self._region = region
        self._manage_lifecycle = manage_lifecycle
        self._pool = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="skiff-s3")
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(max_pool_connections=max_connections, retries={"mode": "standard"}),
        )
        self._ready = False
        self._ready_lock = asyncio.Lock()

    async def _call(self, fn: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(**kwargs))

    def _key(self, job_id: str, kind: str) -> str:
        return f"{self._prefix}{_check_job_id(job_id)}/{_check_kind(kind)}.json"

    async def ensure(self) -> None:
        """Create the bucket when missing and merge Skiff's lifecycle rules into its configuration."""
        try:
            await self._call(self._client.head_bucket, Bucket=self._bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                raise
            kwargs: dict[str, Any] = {"Bucket": self._bucket}
            if self._region != "us-east-1":  # us-east-1 rejects an explicit LocationConstraint
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self._region}
            await self._call(self._client.create_bucket, **kwargs)
        if self._manage_lifecycle:
            try:
                await self._merge_lifecycle()
            except ClientError as exc:
                # Explicit deletes still work; only the safety net is missing.
                log.warning("could not set lifecycle rules on s3://%s: %s", self._bucket, exc)

    def _rule_id(self, days: int) -> str:
        return f"skiff-{self._prefix}-{days}d"[:255]

    async def _merge_lifecycle(self) -> None:
        try:
            reply = await self._call(self._client.get_bucket_lifecycle_configuration, Bucket=self._bucket)
            rules: list[dict[str, Any]] = reply.get("Rules", [])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchLifecycleConfiguration":
                raise
            rules = []
        ours = {self._rule_id(days) for days in EXPIRY_CLASSES_DAYS}
        merged = [rule for rule in rules if rule.get("ID") not in ours]
        merged += [
            {
                "ID": self._rule_id(days),
                "Status": "Enabled",
                "Filter": {"And": {"Prefix": self._prefix, "Tags": [{"Key": TAG_KEY, "Value": f"{days}d"}]}},
                "Expiration": {"Days": days},
            }
            for days in EXPIRY_CLASSES_DAYS
        ]
        await self._call(
            self._client.put_bucket_lifecycle_configuration,
            Bucket=self._bucket,
            LifecycleConfiguration={"Rules": merged},
        )

    async def _ensure_once(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if not self._ready:
                await self.ensure()
                self._ready = True

    async def put(self, job_id: str, kind: PayloadKind, data: bytes, expires_at: float) -> str:
        key = self._key(job_id, kind)
        await self._ensure_once()
        kwargs: dict[str, Any] = {
            "Bucket": self._bucket,
            "Key": key,
            "Body": data,
            "ContentType": "application/json",
        }
        days = expiry_class(expires_at, time.time())
        if days is not None:
            kwargs["Tagging"] = f"{TAG_KEY}={days}d"
        await self._call(self._client.put_object, **kwargs)
        return f"s3://{self._bucket}/{key}"

    async def get(self, ref: str) -> bytes:
        head = f"s3://{self._bucket}/{self._prefix}"
        if not ref.startswith(head):
            raise ValueError(f"not a payload ref of this S3 store ({head}...): {ref!r}")
        try:
            reply = await self._call(
                self._client.get_object, Bucket=self._bucket, Key=ref[len(f"s3://{self._bucket}/") :]
            )
            body = reply["Body"]
            return await asyncio.get_running_loop().run_in_executor(self._pool, body.read)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise PayloadMissing(f"payload {ref!r} is gone (expired or deleted)") from None
            raise

    async def delete(self, job_id: str) -> None:
        # DeleteObjects succeeds for keys that do not exist: no listing needed.
        await self._call(
            self._client.delete_objects,
            Bucket=self._bucket,
            Delete={"Objects": [{"Key": self._key(job_id, kind)} for kind in KINDS], "Quiet": True},
        )

    async def sweep(self, now: float | None = None) -> int:
        return 0  # the bucket's lifecycle rules (see `ensure`) expire objects by their tag

    async def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()
