"""SQS's JSON protocol on asyncio: one signed HTTP POST per action, on a pooled aiohttp session.

boto3 is synchronous and spends about a millisecond of CPU on each call (its event hooks, model
driven serialisation and parsing), plus a thread hand-off each way; on a gateway that sends,
receives and deletes a message for every job that was most of its CPU. This client keeps what
matters of botocore and leaves the rest:
- botocore resolves the endpoint (endpoint_url, AWS_ENDPOINT_URL_SQS, the region's endpoint), the
  credentials (the usual chain: environment, shared files, web identity, container and instance
  roles, refreshed before they expire) and the CA bundle, and canonicalises the endpoint's URL for
  signing; each request is signed here (SigV4, for this client's one request shape: a POST of a
  JSON body with four headers), at a tenth of the CPU of botocore's general signer;
- parameters and replies are the JSON documents of the SQS API reference, the same field names
  boto3 uses, so callers pass what they would pass to boto3 and read what it would return;
- errors are raised as botocore raises them, so callers (and skiff_core.outages) handle them as
  they would boto3's: ClientError with SQS's error code (the query-compatible code from the
  x-amzn-query-error header when given, else the type name), EndpointConnectionError,
  ReadTimeoutError and ConnectionClosedError for the transport;
- retries follow botocore's "standard" mode: up to 3 attempts for connection errors, 5xx answers
  and throttling, with jittered exponential backoff.

Protocol: https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-making-api-requests-json.html
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import random
import ssl
import time
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.session
import orjson
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

MAX_ATTEMPTS = 3  # botocore's standard retry mode
MAX_BACKOFF_S = 20.0
CONNECT_TIMEOUT_S = 10.0
# Codes botocore's standard mode retries (botocore/retries/standard.py), as SQS spells them too.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "AWS.SimpleQueueService.RequestThrottled",
    }
)
RETRIED_STATUSES = frozenset({500, 502, 503, 504})
TARGET_PREFIX = "AmazonSQS."
CONTENT_TYPE = "application/x-amz-json-1.0"


class SqsApi:
    def __init__(self, endpoint_url: str | None, region: str, *, max_connections: int, read_timeout_s: float) -> None:
        session = botocore.session.get_session()
        # A client is made only to let botocore resolve the endpoint and region; it sends nothing.
        resolver = session.create_client("sqs", endpoint_url=endpoint_url, region_name=region)
        self._url: str = resolver.meta.endpoint_url
        self._region: str = resolver.meta.region_name
        resolver.close()
        self._credentials: Credentials | None = session.get_credentials()
        self._ca_bundle: str | None = session.get_config_variable("ca_bundle")
        self._signer = Signer(self._url, self._region)
        self._proxy = _env_proxy(self._url)
        self._max_connections = max_connections
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=read_timeout_s)
        self._http: aiohttp.ClientSession | None = None

    def _session(self) -> aiohttp.ClientSession:
        # Made on first use: an aiohttp session belongs to the running event loop.
        if self._http is None or self._http.closed:
            ssl_context: ssl.SSLContext | bool = True
            if self._ca_bundle:
                ssl_context = ssl.create_default_context(cafile=self._ca_bundle)
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=ssl_context),
                timeout=self._timeout,
            )
        return self._http

    async def _frozen_credentials(self) -> ReadOnlyCredentials:
        credentials = self._credentials
        if credentials is None:
            raise NoCredentialsError()
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            # A refresh may call out (instance metadata, STS): not on the event loop.
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    async def call(self, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """One SQS action (e.g. "SendMessageBatch") with boto3's parameters; its reply as a dict."""
        body = orjson.dumps(params)
        attempt = 0
        while True:
            attempt += 1
            try:
                status, headers, raw = await self._post(action, body)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
                if attempt >= MAX_ATTEMPTS:
                    raise _transport_error(self._url, exc) from exc
            else:
                if status < 300:
                    return orjson.loads(raw) if raw.strip() else {}
                error = _error(status, headers, raw)
                code = error["Error"]["Code"]
                if attempt >= MAX_ATTEMPTS or (status not in RETRIED_STATUSES and code not in THROTTLING_CODES):
                    raise ClientError(error, action)
            await asyncio.sleep(random.random() * min(MAX_BACKOFF_S, 2.0 ** (attempt - 1)))

    async def _post(self, action: str, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
        """One signed HTTP request."""
        headers = self._signer.headers(await self._frozen_credentials(), TARGET_PREFIX + action, body, time.time())
        async with self._session().post(self._url, data=body, headers=headers, proxy=self._proxy) as reply:
            return reply.status, reply.headers, await reply.read()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None


class Signer:
    """AWS Signature Version 4 of a JSON POST to one SQS endpoint, as botocore's SigV4Auth signs it.

    botocore's signer is general (any method, query, header set) and costs about 0.1 ms a request;
    here the parts that depend on the endpoint's URL are worked out once, by botocore, and the
    signing key once a day. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
    """

    def __init__(self, url: str, region: str) -> None:
        probe = AWSRequest(method="POST", url=url, data=b"")
        probe.context["timestamp"] = "20000101T000000Z"
        canonical = SigV4Auth(Credentials("-", "-"), "sqs", region).canonical_request(probe)
        lines = canonical.split("\n")
        self._prefix = "\n".join(lines[:3])  # method, canonical path, canonical query string
        self._host = next(line for line in lines if line.startswith("host:")).removeprefix("host:")
        self._region = region
        self._key: tuple[str, str, bytes] | None = None  # secret, day, signing key

    def headers(self, credentials: ReadOnlyCredentials, target: str, body: bytes, now: float) -> dict[str, str]:
        """The request's headers, Authorization included (aiohttp adds Host, as signed)."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        day = stamp[:8]
        headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Date": stamp, "X-Amz-Target": target}
        # Canonical headers: lower-case names in order, whitespace in values collapsed.
        signed_headers = [("content-type", CONTENT_TYPE), ("host", self._host), ("x-amz-date", stamp)]
        if credentials.token:
            headers["X-Amz-Security-Token"] = credentials.token
            signed_headers.append(("x-amz-security-token", " ".join(credentials.token.split())))
        signed_headers.append(("x-amz-target", target))
        canonical_headers = "".join(f"{name}:{value}\n" for name, value in signed_headers)
        signed = ";".join(name for name, _value in signed_headers)
        canonical = f"{self._prefix}\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
        scope = f"{day}/{self._region}/sqs/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(credentials.secret_key, day), to_sign.encode(), hashlib.sha256)
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature.hexdigest()}"
        )
        return headers

    def _signing_key(self, secret: str, day: str) -> bytes:
        if self._key is None or self._key[:2] != (secret, day):
            key = ("AWS4" + secret).encode()
            for part in (day, self._region, "sqs", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._key = (secret, day, key)
        return self._key[2]


def _transport_error(url: str, exc: Exception) -> Exception:
    """botocore's exception for a failed request, as a boto3 call would raise it."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return EndpointConnectionError(endpoint_url=url, error=exc)
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError is one too
        return ReadTimeoutError(endpoint_url=url, error=exc)
    return ConnectionClosedError(endpoint_url=url, error=exc)


def _env_proxy(url: str) -> str | None:
    """The proxy for `url` from HTTP(S)_PROXY and NO_PROXY, as botocore honours them; read once
    (aiohttp's trust_env would read the environment again, on a thread, for every request)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _error(status: int, headers: Mapping[str, str], raw: bytes) -> dict[str, Any]:
    """botocore's error shape from a JSON-protocol error reply."""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        parsed = {}
    code = str(parsed.get("__type") or parsed.get("code") or "").rsplit("#", 1)[-1]
    # SQS keeps its older error codes (AWS.SimpleQueueService.NonExistentQueue) in this header.
    query_error = next((v for k, v in headers.items() if k.lower() == "x-amzn-query-error"), "")
    if query_error:
        code = query_error.split(";", 1)[0]
    message = str(parsed.get("message") or parsed.get("Message") or raw[:200].decode(errors="replace"))
    return {
        "Error": {"Code": code or str(status), "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": dict(headers)},
    }
