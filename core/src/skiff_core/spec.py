"""The endpoint schema: what an `endpoint "name" { ... }` block in an HCL file may say.

Defaults follow Runpod Serverless where it has one (max workers 3, idle timeout 5 s, execution
timeout 600 s, job TTL 24 h, queue-delay scaler at 4 s). Parsing HCL lives in `skiff_core.endpoints`;
this module is pure pydantic so the SDK and the controller share it.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from skiff_core.durations import parse_duration

NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Skiff's own Nomad jobs and Consul services are `skiff-<name>` too (nomad/*.nomad.hcl): an
# endpoint of one of these names would replace the gateway's job or take its service name.
RESERVED_NAMES = frozenset({"gateway", "controller", "redis", "elasticmq"})
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _seconds(value: Any) -> float:
    # parse_duration expects text or a number; anything else (a list, null) must become a
    # ValueError here so pydantic reports it as a field error instead of raising out of validation.
    if not isinstance(value, str | int | float):
        raise ValueError(f'expected a duration such as "5s", "10m" or "24h", got {value!r}')
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_seconds)]


class EndpointType(StrEnum):
    QUEUE = "queue"
    LOAD_BALANCER = "load_balancer"


class ScalerType(StrEnum):
    QUEUE_DELAY = "queue_delay"  # add workers while the oldest job has waited > target seconds
    REQUEST_COUNT = "request_count"  # ceil((queued + in progress) / target) workers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GpuSpec(_Strict):
    count: StrictInt = Field(default=1, ge=0, le=16)
    models: list[str] = Field(default_factory=list)


class ResourcesSpec(_Strict):
    cpu_mhz: StrictInt = Field(default=1000, ge=100)
    memory_mb: StrictInt = Field(default=1024, ge=64)


class ScalingSpec(_Strict):
    min_workers: StrictInt = Field(default=0, ge=0)
    max_workers: StrictInt = Field(default=3, ge=1)
    idle_timeout: Duration = 5.0
    scaler: ScalerType = ScalerType.QUEUE_DELAY
    target: StrictFloat = Field(default=4.0, gt=0)

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) must not exceed max_workers ({self.max_workers})")
        return self


class EndpointSpec(_Strict):
    name: str
    type: EndpointType = EndpointType.QUEUE
    image: str | None = None
    command: list[str] | None = None
    gpu: GpuSpec | None = None
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    execution_timeout: Duration = 600.0
    job_ttl: Duration = 86400.0
    max_retries: StrictInt = Field(default=3, ge=0, le=100)
    env: dict[str, str] = Field(default_factory=dict)
    # load_balancer endpoints: the path the worker's health server answers 200 on when ready.
    health_path: str = "/ping"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(
                "endpoint names are 1-63 lowercase letters, digits and dashes, starting and ending "
                f"with a letter or digit (got {value!r})"
            )
        if value in RESERVED_NAMES:
            raise ValueError(
                f"endpoint name {value!r} is reserved: Skiff's own Nomad job and Consul service are "
                f"called skiff-{value} (reserved: {', '.join(sorted(RESERVED_NAMES))})"
            )
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError('command must name a program to run, e.g. ["python", "-u", "worker.py"]')
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [key for key in value if not ENV_NAME_RE.match(key)]
        if bad:
            raise ValueError(
                f"environment variable names are letters, digits and underscores, not starting "
                f"with a digit (got {', '.join(repr(k) for k in bad)})"
            )
        return value

    @field_validator("execution_timeout", "job_ttl")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f'must be a positive duration such as "600s" (got {value:g} seconds)')
        return value

    @model_validator(mode="after")
    def _runnable(self) -> EndpointSpec:
        if self.image is None and self.command is None:
            raise ValueError("an endpoint needs `image` (cluster) or `command` (embedded / raw_exec), or both")
        return self

    def spec_hash(self) -> str:
        """Stable digest of everything that shapes a worker: a change means a rolling replacement."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]
