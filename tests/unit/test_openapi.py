"""The served OpenAPI document names exactly the routes the gateway serves, with their methods."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any
from unittest.mock import MagicMock

from starlette.routing import BaseRoute, Route

from skiff_gateway.app import create_app
from skiff_gateway.openapi import DOCUMENT

OPERATIONS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _flatten(routes: Iterable[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        else:
            # FastAPI's include_router keeps the included router whole (an _IncludedRouter).
            inner = getattr(getattr(route, "original_router", None), "routes", None)
            assert inner is not None, f"a route of a kind this test does not know: {route!r}"
            yield from _flatten(inner)


def served() -> set[tuple[str, str]]:
    app = create_app(MagicMock(), manage_context=False)
    pairs = set()
    for route in _flatten(app.router.routes):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {path:path} -> {path}
        for method in route.methods or ():
            # HEAD is Starlette's implicit twin of every GET.
            if method != "HEAD":
                pairs.add((method.lower(), path))
    return pairs


def documented() -> set[tuple[str, str]]:
    return {(method, path) for path, item in DOCUMENT["paths"].items() for method in item if method in OPERATIONS}


def test_every_served_route_is_documented_and_nothing_else() -> None:
    assert sorted(served() - documented()) == []
    assert sorted(documented() - served()) == []


def test_document_is_openapi_31_and_every_reference_resolves() -> None:
    assert DOCUMENT["openapi"].startswith("3.1")
    schemas = DOCUMENT["components"]["schemas"]

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(DOCUMENT):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in DOCUMENT["paths"].items():
        for name in re.findall(r"\{(\w+)\}", path):
            for method, op in item.items():
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"]), (method, path, name)
