"""Which route is which (key scope, rate-limit class), and what each kind of key may call."""

from __future__ import annotations

import pytest

from skiff_core.keys import Scope, new_client_key
from skiff_gateway.auth import Caller, RouteKind, check_client, classify
from skiff_gateway.http import ApiError


@pytest.mark.parametrize(
    ("path", "kind", "write", "limit"),
    [
        ("/v2/echo/run", RouteKind.CLIENT, True, "run"),
        ("/v2/echo/runsync", RouteKind.CLIENT, True, "runsync"),
        ("/v2/echo/status/j1", RouteKind.CLIENT, False, "status"),
        ("/v2/echo/status-sync/j1", RouteKind.CLIENT, False, "status"),
        ("/v2/echo/health", RouteKind.CLIENT, False, "status"),
        ("/v2/echo/stream/j1", RouteKind.CLIENT, False, "stream"),
        ("/v2/echo/cancel/j1", RouteKind.CLIENT, True, "cancel"),
        ("/v2/echo/retry/j1", RouteKind.CLIENT, True, "cancel"),
        ("/v2/echo/purge-queue", RouteKind.CLIENT, True, "purge_queue"),
        ("/v2/echo/openai/v1/chat/completions", RouteKind.CLIENT, True, "openai"),
        ("/v2/echo/something-new", RouteKind.CLIENT, True, None),
        ("/lb/echo/generate", RouteKind.CLIENT, True, None),
        ("/v2/echo/job-take/w1", RouteKind.WORKER, True, None),
        ("/v2/echo/ping/w1", RouteKind.WORKER, True, None),
        ("/v1/keys", RouteKind.ADMIN, True, None),
        ("/healthz", RouteKind.OPEN, True, None),
    ],
)
def test_routes_are_classified(path: str, kind: RouteKind, write: bool, limit: str | None) -> None:
    route = classify(path)
    assert (route.kind, route.write, route.limit) == (kind, write, limit)
    if kind in (RouteKind.CLIENT, RouteKind.WORKER):
        assert route.endpoint == "echo"


def _refusal(caller: Caller, path: str) -> int | None:
    try:
        check_client(caller, classify(path))
    except ApiError as exc:
        return exc.status
    return None


def test_scopes_and_endpoint_lists() -> None:
    reader = Caller(record=new_client_key(Scope.READ, ["a"])[1])
    writer = Caller(record=new_client_key(Scope.WRITE, None)[1])
    admin = Caller(admin=True)
    assert _refusal(reader, "/v2/a/status/j") is None and _refusal(reader, "/v2/a/stream/j") is None
    assert _refusal(reader, "/v2/a/run") == 403 and _refusal(reader, "/lb/a/x") == 403
    assert _refusal(reader, "/v2/b/status/j") == 403
    assert _refusal(writer, "/v2/b/run") is None and _refusal(writer, "/lb/b/x") is None
    assert _refusal(admin, "/v2/anything/purge-queue") is None
    assert _refusal(Caller(error=ApiError(401, "invalid API key")), "/v2/a/status/j") == 401
