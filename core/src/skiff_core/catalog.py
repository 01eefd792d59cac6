"""The endpoints the gateway serves. The controller (or `skiff up`) keeps it current."""

from __future__ import annotations

from collections.abc import Iterable

from skiff_core.spec import EndpointSpec


class EndpointCatalog:
    def __init__(self, specs: Iterable[EndpointSpec] = ()) -> None:
        self._specs: dict[str, EndpointSpec] = {s.name: s for s in specs}

    def get(self, name: str) -> EndpointSpec | None:
        return self._specs.get(name)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def all(self) -> list[EndpointSpec]:
        return [self._specs[n] for n in sorted(self._specs)]

    def replace(self, specs: Iterable[EndpointSpec]) -> None:
        self._specs = {s.name: s for s in specs}

    def put(self, spec: EndpointSpec) -> None:
        self._specs[spec.name] = spec

    def remove(self, name: str) -> None:
        self._specs.pop(name, None)
