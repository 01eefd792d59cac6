"""Admin routes for `skiff status` and `skiff apply`, guarded by the client key.

GET /v1/status: endpoints, their workers (state, idle time, cold start) and queue depth.
POST /v1/apply: `{"endpoints": [<endpoint spec as JSON>, ...]}` is the complete desired set
(declarative: endpoints not listed are removed); answers what was added, changed, removed.
The CLI parses the HCL files itself, so file and line errors are reported where the files are.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response

from skiff_core.spec import EndpointSpec
from skiff_gateway.auth import require_client
from skiff_gateway.context import ControlPlane, GatewayContext
from skiff_gateway.http import ApiError, json_response, parse_json, read_body

router = APIRouter()

MAX_APPLY_BYTES = 4 * 1024 * 1024


def _control(request: Request) -> ControlPlane:
    ctx: GatewayContext = request.app.state.ctx
    require_client(ctx, request)
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
