"""SqsApi against a scripted SQS-like HTTP server on loopback: retries, error codes, signing.

The happy paths run against moto in the queue contract tests; these are the answers moto does not
give on demand (throttling, 5xx, dropped connections).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError

from skiff_core import outages
from skiff_core.queue import sqs_api
from skiff_core.queue.sqs_api import SqsApi
from tests.support.stack import free_port

Reply = Callable[[web.Request], web.StreamResponse]


@dataclass
class Scripted:
    url: str
    replies: list[Reply] = field(default_factory=list)
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


def ok(body: dict[str, object]) -> Reply:
    return lambda _request: web.json_response(body, content_type="application/x-amz-json-1.0")


def error(status: int, type_name: str, query_code: str | None = None) -> Reply:
    headers = {"x-amzn-query-error": f"{query_code};Sender"} if query_code else {}
    body = json.dumps({"__type": f"com.amazonaws.sqs#{type_name}", "message": f"{type_name} says no"})
    return lambda _request: web.Response(status=status, body=body, headers=headers)


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqs_api, "MAX_BACKOFF_S", 0.0)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Scripted]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    port = free_port()
    scripted = Scripted(f"http://127.0.0.1:{port}")

    async def handle(request: web.Request) -> web.StreamResponse:
        scripted.seen.append((dict(request.headers), await request.read()))
        return scripted.replies.pop(0)(request)

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield scripted
    await runner.cleanup()


def _api(server: Scripted) -> SqsApi:
    return SqsApi(server.url, "us-east-1", max_connections=4, read_timeout_s=5)


async def test_a_call_is_signed_json_with_the_action_as_target(server: Scripted) -> None:
    server.replies = [ok({"QueueUrl": "http://q/1"})]
    api = _api(server)
    assert await api.call("GetQueueUrl", {"QueueName": "a"}) == {"QueueUrl": "http://q/1"}
    await api.close()
    headers, body = server.seen[0]
    assert headers["X-Amz-Target"] == "AmazonSQS.GetQueueUrl"
    assert headers["Content-Type"] == "application/x-amz-json-1.0"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/sqs/aws4_request" in headers["Authorization"]
    assert json.loads(body) == {"QueueName": "a"}
    assert _signature_as_received(headers, body) == headers["Authorization"].rsplit("Signature=", 1)[1]


def _signature_as_received(headers: dict[str, str], body: bytes) -> str:
    """SigV4 recomputed from the request as it arrived (its Host, its bytes, the headers it says
    it signed), as SQS checks it: what the client signed is what went on the wire."""
    signed = headers["Authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0].split(";")
    lower = {k.lower(): v for k, v in headers.items()}
    request = AWSRequest(
        method="POST",
        url=f"http://{lower['host']}/",
        data=body,
        headers={name: lower[name] for name in signed if name != "host"},
    )
    request.context["timestamp"] = lower["x-amz-date"]
    auth = SigV4Auth(Credentials("AKIDEXAMPLE", "secret"), "sqs", "us-east-1")
    canonical = auth.canonical_request(request)
    assert "host" in signed and "x-amz-target" in signed and "content-type" in signed, canonical
    signature: str = auth.signature(auth.string_to_sign(request, canonical), request)
    return signature


@pytest.mark.parametrize(
    "url",
    [
        "https://sqs.eu-west-1.amazonaws.com",
        "https://sqs.eu-west-1.amazonaws.com:443/",
        "http://127.0.0.1:9324",
        "http://user@localhost:8080/a/../sqs proxy/",
    ],
)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH  session/token=="])
def test_requests_are_signed_as_botocore_signs_them(
    url: str, token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    import botocore.auth

    now = datetime.datetime(2026, 11, 29, 23, 59, 58)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: now)
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", token).get_frozen_credentials()
    body = b'{"QueueUrl": "https://sqs.eu-west-1.amazonaws.com/1/q", "MaxNumberOfMessages": 10}'
    expected = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.ReceiveMessage"},
    )
    SigV4Auth(credentials, "sqs", "eu-west-1").add_auth(expected)
    signer = sqs_api.Signer(url, "eu-west-1")
    stamp = now.replace(tzinfo=datetime.UTC).timestamp()
    for _ in range(2):  # the second from the cached signing key
        assert signer.headers(credentials, "AmazonSQS.ReceiveMessage", body, stamp) == dict(expected.headers.items())
    # A new day, a new signing key.
    tomorrow = now + datetime.timedelta(days=1)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *args, **kwargs: tomorrow)
    SigV4Auth(credentials, "sqs", "eu-west-1").add_auth(expected)
    later = signer.headers(credentials, "AmazonSQS.ReceiveMessage", body, stamp + 86400)
    assert later == dict(expected.headers.items())


async def test_server_errors_and_throttling_are_retried_up_to_three_attempts(server: Scripted) -> None:
    server.replies = [error(503, "ServiceUnavailable"), error(400, "RequestThrottled"), ok({"Messages": []})]
    api = _api(server)
    assert await api.call("ReceiveMessage", {"QueueUrl": "u"}) == {"Messages": []}
    server.replies = [error(500, "InternalError")] * 3
    with pytest.raises(ClientError) as raised:
        await api.call("ReceiveMessage", {"QueueUrl": "u"})
    await api.close()
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert len(server.seen) == 6


async def test_a_client_error_is_not_retried_and_keeps_the_query_compatible_code(server: Scripted) -> None:
    server.replies = [error(400, "QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue")]
    api = _api(server)
    with pytest.raises(ClientError) as raised:
        await api.call("GetQueueUrl", {"QueueName": "gone"})
    await api.close()
    assert raised.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert raised.value.response["Error"]["Message"] == "QueueDoesNotExist says no"
    assert raised.value.operation_name == "GetQueueUrl"
    assert len(server.seen) == 1


async def test_a_dropped_connection_is_retried(server: Scripted) -> None:
    def drop(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        return web.Response()

    server.replies = [drop, ok({"Successful": [], "Failed": []})]
    api = _api(server)
    assert await api.call("DeleteMessageBatch", {"QueueUrl": "u", "Entries": []}) == {"Successful": [], "Failed": []}
    await api.close()
    assert len(server.seen) == 2


def test_the_proxy_comes_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "localhost,.corp.example")
    assert sqs_api._env_proxy("https://sqs.eu-west-1.amazonaws.com") == "http://proxy.internal:3128"
    assert sqs_api._env_proxy("https://sqs.corp.example") is None
    assert sqs_api._env_proxy("http://localhost:9324") is None


async def test_an_unreachable_server_is_botocores_connection_error_and_a_queue_outage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    api = SqsApi(f"http://127.0.0.1:{free_port()}", "us-east-1", max_connections=4, read_timeout_s=5)
    with pytest.raises(EndpointConnectionError) as raised:
        await api.call("SendMessage", {"QueueUrl": "u", "MessageBody": "{}"})
    await api.close()
    assert outages.classify(raised.value) is outages.QUEUE_DOWN
