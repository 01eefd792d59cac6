"""A bounded fuzz run against a real `skiff up`: requests generated (hypothesis) from the OpenAPI
document the gateway serves, then raw bytes for what a schema cannot express (non-ASCII header
bytes, broken framing). Neither may get a 5xx, a body that is not a JSON error, or a traceback
in a body or the log. Each part stops generating after FUZZ_SECONDS so the suite stays short."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.stack import SkiffProcess, endpoint_hcl

FUZZ_SECONDS = 40.0
MAX_EXAMPLES = 1500
OPERATIONS = ("get", "post", "put", "patch", "delete", "options")
HYPOTHESIS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SkiffProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    endpoints = root / "endpoints"
    endpoints.mkdir()
    (endpoints / "echo.hcl").write_text(
        endpoint_hcl("echo", "tests/workers/skiff_async_echo.py", scaling={"min_workers": 1, "max_workers": 1})
    )
    # Short long polls: the fuzzer calls job-take and job-stop too.
    stack = SkiffProcess(endpoints, root / "state", {"SKIFF_TAKE_WAIT_S": "0.2"})
    try:
        stack.start(timeout=120)
        stack.wait_ready_workers("echo", timeout=120)
        yield stack
    finally:
        stack.stop()
    log = stack.output()
    assert "Traceback" not in log and "unexpected error" not in log, log[-20000:]


class Budget:
    def __init__(self, seconds: float) -> None:
        self.until = time.monotonic() + seconds
        self.calls = 0

    def spent(self) -> bool:
        self.calls += 1
        return time.monotonic() > self.until


# ----------------------------------------------------------------------------- from the schema

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
_run_body = st.fixed_dictionaries(
    {"input": _json},
    optional={
        "webhook": _text | st.sampled_from(["http://127.0.0.1:9/h", "http://[::1", "https://x:99999/"]) | _json,
        "policy": st.fixed_dictionaries(
            {},
            optional={
                "executionTimeout": st.integers(-5, 10**12) | _json,
                "ttl": st.integers(-5, 10**12) | _json,
                "lowPriority": st.booleans() | _json,
            },
        )
        | _json,
    },
)


def _value(name: str, schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if name == "wait":  # bounded: a real job's wait would hold the run for up to 5 minutes
        return st.integers(-5, 300).map(str) | _text
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | _text
    if schema.get("type") == "integer":
        return st.integers(-(2**70), 2**70).map(str) | _text
    return _text


def _mostly(usual: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`usual` four times in five, so most requests get past the key and endpoint checks."""
    return st.integers(0, 4).flatmap(lambda i: odd if i == 0 else usual)


def _path_value(name: str) -> st.SearchStrategy[str]:
    if name == "endpoint":
        return _mostly(st.just("echo"), st.just("nope") | _text)
    return _text


@st.composite
def schema_requests(draw: st.DrawFn, document: dict[str, Any]) -> tuple[str, str, dict[str, str], Any, bytes | None]:
    operations = sorted((path, method) for path, item in document["paths"].items() for method in item)
    path, method = draw(st.sampled_from([o for o in operations if o[1] in OPERATIONS]))
    op = document["paths"][path][method]
    url = path
    query: dict[str, str] = {}
    for param in op.get("parameters", []):
        if param["in"] == "path":
            url = url.replace("{" + param["name"] + "}", quote(draw(_path_value(param["name"])), safe=""))
        elif draw(st.booleans()):
            query[param["name"]] = draw(_value(param["name"], param.get("schema", {})))
    body: Any = None
    raw: bytes | None = None
    if "requestBody" in op or method in ("post", "put", "patch"):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            raw = draw(st.binary(max_size=200))
        elif choice == 1 and path.endswith(("/run", "/runsync")):
            body = draw(_run_body)
        else:
            body = draw(_json)
        if path == "/v1/apply" and isinstance(body, dict) and isinstance(body.get("endpoints"), list):
            # Never a valid apply: it would replace the stack's endpoints mid-run.
            body["endpoints"] = [*body["endpoints"], {"name": 1}]
    return method.upper(), url, query, body, raw


def test_requests_from_the_served_schema_get_no_5xx(fuzz_stack: SkiffProcess) -> None:
    document = httpx.get(f"{fuzz_stack.url}/openapi.json").json()
    budget = Budget(FUZZ_SECONDS)
    seen: dict[int, int] = {}
    client = httpx.Client(base_url=fuzz_stack.url, timeout=30)
    # Any header value a client can send: no control characters, no whitespace at either end.
    header_text = st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1, max_size=40
    )
    keys = _mostly(st.sampled_from([f"Bearer {fuzz_stack.key}", fuzz_stack.key]), st.just("Bearer wrong") | header_text)

    @HYPOTHESIS
    @given(request=schema_requests(document), key=keys)
    def one(request: tuple[str, str, dict[str, str], Any, bytes | None], key: str) -> None:
        if budget.spent():
            return
        method, url, query, body, raw = request
        headers = {"Authorization": key.encode("utf-8")}
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = b"application/json"
        response = client.request(method, url, params=query, content=raw, headers=headers)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        _assert_sound(response, f"{method} {url} {query} {body!r:.200}")

    try:
        one()
    finally:
        client.close()
    print(f"schema fuzz: {budget.calls} requests, statuses {dict(sorted(seen.items()))}")
    assert sum(seen.values()) > 50 and any(s < 300 for s in seen), seen


def _assert_sound(response: httpx.Response, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code} {response.text[:500]}"
    assert "Traceback" not in response.text, what
    if response.status_code >= 400 and response.request.method != "HEAD":
        error = response.json().get("error")
        if "/openai/" in response.request.url.path:
            error = error.get("message") if isinstance(error, dict) else None  # OpenAI's error shape
        assert isinstance(error, str), f"{what} -> {response.text[:500]}"


# ----------------------------------------------------------------------------- raw bytes

_token = st.binary(min_size=1, max_size=30)


@st.composite
def raw_requests(draw: st.DrawFn, key: str) -> bytes:
    """A request whose framing or header bytes a schema cannot describe."""
    path = draw(st.sampled_from([b"/v2/echo/run", b"/v2/echo/runsync", b"/v2/echo/status/x", b"/healthz"]))
    method = draw(st.sampled_from([b"POST", b"GET", b"PUT"]) | _token)
    headers = [(b"Host", b"127.0.0.1"), (b"Authorization", b"Bearer " + key.encode())]
    if draw(st.booleans()):
        headers.append((draw(st.sampled_from([b"Authorization", b"X-Any", b"Content-Type"])), draw(_token)))
    body = draw(st.sampled_from([b'{"input": 1}', b"{", b""]) | st.binary(max_size=100))
    framing = draw(st.sampled_from(["length", "short", "long", "chunked", "bad-chunked", "both", "garbage-length"]))
    if framing == "length":
        headers.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "short":  # says more than it sends, then hangs up
        headers.append((b"Content-Length", str(len(body) + 50).encode()))
    elif framing == "long":  # sends more than it says
        headers.append((b"Content-Length", str(max(0, len(body) - 3)).encode()))
    elif framing == "chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    elif framing == "bad-chunked":
        headers.append((b"Transfer-Encoding", b"chunked"))
        body = b"zz\r\n" + body
    elif framing == "both":
        headers += [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")]
    else:
        headers.append((b"Content-Length", draw(st.sampled_from([b"-1", b"1e3", b"99999999999999999999", b"x"]))))
    head = b"%s %s HTTP/1.1\r\n" % (method, path) + b"".join(b"%s: %s\r\n" % h for h in headers)
    return head + b"\r\n" + body


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return b""  # the server refused mid-send: a close is an acceptable answer to garbage
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    return b"".join(chunks)


def test_raw_bytes_get_no_5xx_and_leave_the_server_answering(fuzz_stack: SkiffProcess) -> None:
    budget = Budget(FUZZ_SECONDS / 3)
    seen: dict[bytes, int] = {}

    @HYPOTHESIS
    @given(data=raw_requests(fuzz_stack.key))
    def one(data: bytes) -> None:
        if budget.spent():
            return
        answer = _exchange(fuzz_stack.port, data)
        status = answer[9:12]
        seen[status] = seen.get(status, 0) + 1
        assert not status.startswith(b"5"), f"{data[:300]!r} -> {answer[:500]!r}"
        assert b"Traceback" not in answer, answer[:2000]

    one()
    print(f"raw fuzz: {budget.calls} requests, statuses {dict(sorted(seen.items()))}")
    assert httpx.get(f"{fuzz_stack.url}/healthz").status_code == 200
