"""Admin routes for `skiff status`, `skiff apply` and `skiff keys`, guarded by the admin key.

GET /v1/status: endpoints, their workers (state, idle time, cold start) and queue depth.
POST /v1/apply: `{"endpoints": [<endpoint spec as JSON>, ...]}` is the complete desired set
(declarative: endpoints not listed are removed); answers what was added, changed, removed.
The CLI parses the HCL files itself, so file and line errors are reported where the files are.
POST /v1/keys: `{"scope": "read"|"write", "endpoints": [...] (optional), "name": ""}` creates a
client key and answers it once (`key`); the store keeps its hash. GET /v1/keys lists the keys
(never a key, nor its hash); DELETE /v1/keys/{id} revokes one. These need no controller: a
plain `skiff gateway` serves them, and every replica sharing the store sees the change.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from skiff_core.keys import Scope, new_client_key
from skiff_core.spec import NAME_RE, EndpointSpec
from skiff_gateway.auth import require_admin
from skiff_gateway.context import ControlPlane, GatewayContext
from skiff_gateway.http import ApiError, json_response, parse_json, read_body

router = APIRouter()

MAX_APPLY_BYTES = 4 * 1024 * 1024


def _control(request: Request) -> ControlPlane:
    ctx: GatewayContext = request.app.state.ctx
    require_admin(ctx, request)
    if ctx.control is None:
        raise ApiError(503, "this gateway runs without a controller: point `skiff status`/`skiff apply` at `skiff up`")
    return ctx.control


@router.get("/v1/status")
async def status(request: Request) -> Response:
    return json_response(await _control(request).status())


@router.post("/v1/apply")
async def apply(request: Request) -> Response:
    control = _control(request)
    body = parse_json(await read_body(request, MAX_APPLY_BYTES))
    raw = body.get("endpoints") if isinstance(body, dict) else None
    if not isinstance(raw, list):
        raise ApiError(400, 'apply body must be {"endpoints": [...]}, the complete list of endpoint specs')
    specs: list[EndpointSpec] = []
    for index, item in enumerate(raw):
        try:
            specs.append(EndpointSpec.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "endpoint"
            raise ApiError(400, f"endpoints[{index}].{where}: {first['msg']}") from None
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ApiError(400, f"endpoint names must be unique; repeated: {', '.join(duplicates)}")
    return json_response(await control.apply(specs))


MAX_KEY_REQUEST_BYTES = 64 * 1024


def _admin(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    require_admin(ctx, request)
    return ctx


@router.post("/v1/keys")
async def create_key(request: Request) -> Response:
    ctx = _admin(request)
    body = parse_json(await read_body(request, MAX_KEY_REQUEST_BYTES))
    if not isinstance(body, dict):
        raise ApiError(400, 'body must be {"scope": "read" | "write", "endpoints": [...], "name": "..."}')
    unknown = sorted(set(body) - {"scope", "endpoints", "name"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; expected scope, endpoints, name")
    try:
        scope = Scope(str(body.get("scope")))
    except ValueError:
        raise ApiError(400, 'scope must be "read" (status, stream, health) or "write" (everything)') from None
    endpoints = body.get("endpoints")
    if endpoints is not None:
        if not isinstance(endpoints, list) or not endpoints or not all(isinstance(e, str) for e in endpoints):
            raise ApiError(400, "endpoints must be a non-empty list of endpoint names, or absent for all endpoints")
        bad = [e for e in endpoints if not NAME_RE.match(e)]
        if bad:
            raise ApiError(400, f"not endpoint names: {', '.join(repr(e) for e in bad)}")
    name = body.get("name", "")
    if not isinstance(name, str) or len(name) > 200:
        raise ApiError(400, "name must be a string of at most 200 characters")
    key, record = new_client_key(scope, endpoints, name)
    await ctx.store.put_key(record)
    return json_response({"key": key, **record.public()}, status=201)


@router.get("/v1/keys")
async def list_keys(request: Request) -> Response:
    ctx = _admin(request)
    return json_response({"keys": [record.public() for record in await ctx.store.list_keys()]})


@router.delete("/v1/keys/{key_id}")
async def revoke_key(request: Request, key_id: str) -> Response:
    ctx = _admin(request)
    if not await ctx.store.delete_key(key_id):
        raise ApiError(404, f"no API key with id {key_id!r}: see `skiff keys list`")
    ctx.resolver.forget(key_id)
    return json_response({"id": key_id, "revoked": True})
