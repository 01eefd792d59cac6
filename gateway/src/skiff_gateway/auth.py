"""Every API route checks its key.

- Client routes (`/v2/{endpoint}/run`, status, ..., `/lb/{endpoint}/...`): the admin key, or a
  client key created with `skiff keys` whose scope covers the route (read-only keys: status,
  stream, health) and whose endpoint list (if any) names the endpoint.
- Worker routes (job-take, job-done, ...): the endpoint's own worker key, or the admin key (an
  operator may run a worker by hand with it).
- Admin routes (`/v1/...`: status, apply, keys): the admin key only.

Client keys live hashed in the job store. `AccessMiddleware` (skiff_gateway.access) looks the
presented key up once per request, through `KeyResolver`'s short cache, and leaves the answer
in the request's scope, where the routes' synchronous checks below read it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from starlette.requests import Request

from skiff_core.keys import ClientKeyRecord, KeyRing, Scope, client_key_id, matches, presented_key
from skiff_core.store.base import ClientKeys
from skiff_gateway.http import ApiError

if TYPE_CHECKING:
    from skiff_gateway.context import GatewayContext

_MISSING = "missing API key: send `Authorization: Bearer <key>`"
CALLER = "skiff.caller"  # request scope entries set by AccessMiddleware
ROUTE = "skiff.route"
# Bounds the cache of key lookups: a flood of made-up key ids must not grow memory.
MAX_CACHED_KEYS = 10_000


class RouteKind(StrEnum):
    CLIENT = "client"
    WORKER = "worker"
    ADMIN = "admin"
    OPEN = "open"  # /healthz, unknown paths (404); a client route here needs an all-endpoints key


@dataclass(frozen=True)
class RouteClass:
    kind: RouteKind
    endpoint: str | None = None
    write: bool = True
    limit: str | None = None  # rate-limit class (skiff_core.spec.RateLimits field), None: unlimited
    label: str = ""  # the route as messages name it


_WORKER_ACTIONS = frozenset({"job-take", "job-take-batch", "job-done", "job-stream", "job-stop", "ping"})
# action -> (needs a read-write key, rate-limit class)
_CLIENT_ACTIONS: dict[str, tuple[bool, str | None]] = {
    "run": (True, "run"),
    "runsync": (True, "runsync"),
    "status": (False, "status"),
    "status-sync": (False, "status"),
    "health": (False, "status"),
    "stream": (False, "stream"),
    "cancel": (True, "cancel"),
    "retry": (True, "cancel"),
    "purge-queue": (True, "purge_queue"),
    "openai": (True, "openai"),
}


def classify(path: str) -> RouteClass:
    """What a request path is, for the key check and the rate limits."""
    parts = path.split("/", 4)  # "", "v2", endpoint, action, rest
    if len(parts) >= 4 and parts[1] == "v2" and parts[2]:
        endpoint, action = parts[2], parts[3]
        if action in _WORKER_ACTIONS:
            return RouteClass(RouteKind.WORKER, endpoint, label=action)
        write, limit = _CLIENT_ACTIONS.get(action, (True, None))
        return RouteClass(RouteKind.CLIENT, endpoint, write, limit, action)
    if len(parts) >= 3 and parts[1] == "lb" and parts[2]:
        return RouteClass(RouteKind.CLIENT, parts[2], True, None, "lb")
    if len(parts) >= 2 and parts[1] == "v1":
        return RouteClass(RouteKind.ADMIN, label=path)
    return RouteClass(RouteKind.OPEN, label=path)


@dataclass(frozen=True)
class Caller:
    """Who presented which key: `admin`, a client key (`record`), or nobody valid (`error`)."""

    admin: bool = False
    record: ClientKeyRecord | None = None
    error: ApiError | None = None

    @property
    def identity(self) -> str:
        """What rate limits count by: the key's id (never the key)."""
        return "admin" if self.admin else (self.record.id if self.record is not None else "-")


class KeyResolver:
    """Presented key -> Caller, with client-key records cached for `cache_s` seconds: a revoked
    key stops working on every replica within that bound (at once on the replica that revoked)."""

    def __init__(self, keys: KeyRing, store: ClientKeys, cache_s: float) -> None:
        self.keys = keys
        self.store = store
        self.cache_s = cache_s
        self._cache: dict[str, tuple[ClientKeyRecord | None, float]] = {}

    async def resolve(self, presented: str | None) -> Caller:
        if presented is None:
            return Caller(error=ApiError(401, _MISSING))
        if self.keys.is_admin(presented):
            return Caller(admin=True)
        key_id = client_key_id(presented)
        if key_id is not None:
            record = await self._record(key_id)
            if record is not None and matches(presented, record):
                return Caller(record=record)
        elif KeyRing.looks_like_worker_key(presented):
            return Caller(error=ApiError(403, "a worker key cannot call the client API"))
        return Caller(error=ApiError(401, "invalid API key"))

    async def _record(self, key_id: str) -> ClientKeyRecord | None:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is not None and cached[1] > now:
            return cached[0]
        record = await self.store.get_key(key_id)
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[key_id] = (record, now + self.cache_s)
        return record

    def forget(self, key_id: str) -> None:
        self._cache.pop(key_id, None)


def check_client(caller: Caller, route: RouteClass) -> None:
    """Raises the ApiError a client route answers when the caller may not call it."""
    if caller.error is not None:
        raise caller.error
    record = caller.record
    if caller.admin or record is None:
        return
    if route.write and record.scope is not Scope.WRITE:
        raise ApiError(403, f"this API key is read-only: it cannot call {route.label}")
    if record.endpoints is not None and route.endpoint not in record.endpoints:
        raise ApiError(403, f"this API key is not valid for endpoint {route.endpoint!r}")


def _caller(request: Request) -> tuple[Caller, RouteClass]:
    try:
        return request.scope[CALLER], request.scope[ROUTE]
    except KeyError:
        raise RuntimeError("the gateway app runs without AccessMiddleware: no key was checked") from None


def require_client(ctx: GatewayContext, request: Request) -> None:
    caller, route = _caller(request)
    check_client(caller, route)


def require_admin(ctx: GatewayContext, request: Request) -> None:
    caller, _route = _caller(request)
    if caller.error is not None:
        raise caller.error
    if not caller.admin:
        raise ApiError(403, "only the admin key (SKIFF_API_KEY) may call the admin API")


def require_worker(ctx: GatewayContext, request: Request, endpoint: str) -> None:
    key = presented_key(request.headers.get("authorization"))
    if key is None:
        raise ApiError(401, _MISSING)
    if ctx.keys.is_worker_for(key, endpoint) or ctx.keys.is_admin(key):
        return
    if ctx.keys.looks_like_worker_key(key):
        raise ApiError(403, f"this worker key is not valid for endpoint {endpoint!r}")
    raise ApiError(401, "invalid API key")
