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
    StrictBool,
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
# Variables Skiff or Nomad set in a worker's environment: a secret may not replace them.
RESERVED_ENV_PREFIXES = ("RUNPOD_", "SKIFF_", "NOMAD_")
# Every endpoint's Nomad job is `skiff-<name>`, and a load_balancer endpoint's Consul service too.
NAME_PREFIX = "skiff-"
# nomad/structs/services.go Service.ValidateName: an RFC 1123 label, at most 63 characters.
SERVICE_NAME_MAX = 63


class ImageReferenceError(ValueError):
    """The endpoint's `image` is not a valid Docker image reference."""


# The grammar of github.com/distribution/reference (regexp.go), which Docker uses to parse
# `image` before pulling. Checked with the spec, so a typo fails at `skiff validate` / `skiff
# deploy`, not as a pull error on a GPU node minutes later.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(rf"^(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$")
_IMAGE_NAME_MAX = 255  # reference.NameTotalLengthMax


def validate_image_reference(image: str) -> str:
    match = _REFERENCE.match(image)
    if match is None:
        raise ImageReferenceError(
            f"invalid image reference {image!r}: expected [registry[:port]/]name[:tag][@digest] "
            'with a lowercase repository name, e.g. "ghcr.io/acme/echo-worker:1"'
        )
    if len(match.group("name")) > _IMAGE_NAME_MAX:
        raise ImageReferenceError(f"invalid image reference {image!r}: repository name longer than 255")
    return image


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
    # The models a worker may run on, best first: only these are allowed, and among the nodes
    # that have a free one the earlier models are preferred (Nomad device affinities).
    models: list[str] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _models(cls, value: list[str]) -> list[str]:
        twice = sorted({m for m in value if value.count(m) > 1})
        if twice:
            raise ValueError(f"listed more than once: {', '.join(twice)} (the order is the preference)")
        return value


# Runpod mounts an endpoint's network volume here; handlers written for it look there.
DEFAULT_VOLUME_PATH = "/runpod-volume"
VOLUME_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
VOLUME_ENV_PREFIX = "SKIFF_VOLUME_"


class VolumeType(StrEnum):
    HOST = "host"  # a Nomad host volume, declared on the client (Terraform's `model-cache`)
    CSI = "csi"  # a CSI volume registered with Nomad


class VolumeSpec(_Strict):
    """`volume "models" { source = "model-cache" }`: a directory shared by the endpoint's workers
    (a model cache). In a cluster, Nomad mounts the volume `source` at `path`; `skiff up` cannot
    mount, so it gives workers a local directory (`local_path`, or one under its state dir) and
    says where in SKIFF_VOLUME_<LABEL> (set to `path` in a cluster too)."""

    source: str = Field(min_length=1)
    type: VolumeType = VolumeType.HOST
    path: str = DEFAULT_VOLUME_PATH
    read_only: StrictBool = False
    local_path: str | None = None

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError(f'must be an absolute path inside the worker such as "/runpod-volume" (got {value!r})')
        return value


def volume_env(label: str) -> str:
    """The variable that tells a worker where volume `label` is: SKIFF_VOLUME_MODELS for "models"."""
    return VOLUME_ENV_PREFIX + label.upper().replace("-", "_")


class ResourcesSpec(_Strict):
    cpu_mhz: StrictInt = Field(default=1000, ge=100)
    memory_mb: StrictInt = Field(default=1024, ge=64)


class ScalingSpec(_Strict):
    min_workers: StrictInt = Field(default=0, ge=0)
    max_workers: StrictInt = Field(default=3, ge=1)
    idle_timeout: Duration = 5.0
    scaler: ScalerType = ScalerType.QUEUE_DELAY
    target: StrictFloat = Field(default=4.0, gt=0)
    # Workers a rolling replacement may run above max_workers while old ones drain. 0: a GPU that
    # does not exist cannot be borrowed; an old worker leaves before its replacement starts.
    max_surge: StrictInt = Field(default=0, ge=0)
    # Predictive pre-warm (0: off): with no worker up, start one ahead of the next predicted
    # arrival when prewarm x (client seconds of cold start it saves) exceeds the worker-seconds
    # it is expected to cost. The knob is what one second of a client's cold-start wait is worth
    # in idle worker-seconds.
    prewarm: StrictFloat = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> ScalingSpec:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers ({self.min_workers}) must not exceed max_workers ({self.max_workers})")
        return self


# The longest rate-limit window allowed: counts older than this are never needed.
MAX_RATE_WINDOW_S = 3600.0


class RateLimit(_Strict):
    """One route's limits for one key on one endpoint; unset: the global value, 0: no limit."""

    requests: StrictInt | None = Field(default=None, ge=0)  # per window (10 s, as Runpod)
    concurrent: StrictInt | None = Field(default=None, ge=0)  # requests in flight at once


class RateLimits(_Strict):
    """Limits by route class (skiff_gateway.ratelimit says which route is in which class).
    An unset class or field takes the global setting's, and that one Runpod's."""

    run: RateLimit | None = None
    runsync: RateLimit | None = None
    status: RateLimit | None = None  # status, status-sync, health
    stream: RateLimit | None = None
    cancel: RateLimit | None = None  # cancel, retry
    purge_queue: RateLimit | None = None
    openai: RateLimit | None = None


# Runpod's documented limits (requests per 10 s / concurrent), per endpoint and route.
RUNPOD_RATE_LIMITS = RateLimits(
    run=RateLimit(requests=1000, concurrent=200),
    runsync=RateLimit(requests=2000, concurrent=400),
    status=RateLimit(requests=2000, concurrent=400),
    stream=RateLimit(requests=2000, concurrent=400),
    cancel=RateLimit(requests=100, concurrent=20),
    purge_queue=RateLimit(requests=2, concurrent=0),
    openai=RateLimit(requests=2000, concurrent=400),
)


def effective_limit(route: str, *layers: RateLimits | None) -> tuple[int | None, int | None]:
    """(requests per window, concurrent) for a route class: the first layer that sets each field
    wins, Runpod's defaults last; None for no limit."""
    requests: int | None = None
    concurrent: int | None = None
    for layer in (*layers, RUNPOD_RATE_LIMITS):
        limit = getattr(layer, route, None) if layer is not None else None
        if limit is None:
            continue
        if requests is None and limit.requests is not None:
            requests = limit.requests
        if concurrent is None and limit.concurrent is not None:
            concurrent = limit.concurrent
    return (requests or None), (concurrent or None)


_LATER_SCALING_FIELDS = ("max_surge", "prewarm")


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
    # Queue endpoints: the most jobs one worker holds at once, whatever it asks for (a
    # concurrency_modifier, job-take-batch's batch_size). None: as many as it asks for.
    concurrency: StrictInt | None = Field(default=None, ge=1, le=64)
    # The Nomad datacenters this endpoint's workers may run in; None: the cluster's setting
    # (SKIFF_NOMAD_DATACENTERS).
    datacenters: list[str] | None = None
    # Names of secrets the worker gets as environment variables: Nomad Variables in a cluster,
    # `skiff secrets` / the environment under `skiff up`; never written in the job.
    secrets: list[str] = Field(default_factory=list)
    # `volume "label" { ... }` blocks, by label.
    volume: dict[str, VolumeSpec] = Field(default_factory=dict)
    # load_balancer endpoints: the path the worker's health server answers 200 on when ready.
    health_path: str = "/ping"
    # Per key and route on this endpoint; over the settings' (and Runpod's) defaults.
    rate_limits: RateLimits | None = None

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

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        return None if value is None else validate_image_reference(value)

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

    @field_validator("datacenters")
    @classmethod
    def _datacenters(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or any(not dc.strip() for dc in value)):
            raise ValueError('must name at least one datacenter, e.g. ["dc1"] (leave it out for the default)')
        return value

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, value: list[str]) -> list[str]:
        bad = [name for name in value if not ENV_NAME_RE.match(name)]
        if bad:
            raise ValueError(
                "secret names are environment variable names: letters, digits and underscores, not "
                f"starting with a digit (got {', '.join(repr(n) for n in bad)})"
            )
        reserved = [name for name in value if name.startswith(RESERVED_ENV_PREFIXES)]
        if reserved:
            raise ValueError(f"{', '.join(reserved)}: RUNPOD_*, SKIFF_* and NOMAD_* variables are set by Skiff")
        twice = sorted({name for name in value if value.count(name) > 1})
        if twice:
            raise ValueError(f"listed more than once: {', '.join(twice)}")
        return value

    @field_validator("volume")
    @classmethod
    def _volumes(cls, value: dict[str, VolumeSpec]) -> dict[str, VolumeSpec]:
        for label in value:
            if not VOLUME_LABEL_RE.match(label):
                raise ValueError(
                    f"volume labels are 1-63 letters, digits, dashes and underscores, starting with a letter "
                    f"or digit (got {label!r})"
                )
        paths: dict[str, str] = {}
        for label, volume in value.items():
            path = volume.path.rstrip("/")
            if path in paths:
                raise ValueError(f"volumes {paths[path]!r} and {label!r} are both mounted at {volume.path!r}")
            paths[path] = label
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
        both = sorted(set(self.secrets) & set(self.env))
        if both:
            raise ValueError(f"{', '.join(both)} is in both `env` and `secrets`: keep a secret out of `env`")
        if self.concurrency is not None and self.type is EndpointType.LOAD_BALANCER:
            raise ValueError(
                "`concurrency` caps the jobs a queue worker holds; a load_balancer endpoint's workers "
                "get requests, not jobs (scaling.target sets how many each should serve)"
            )
        service = NAME_PREFIX + self.name
        if self.type is EndpointType.LOAD_BALANCER and len(service) > SERVICE_NAME_MAX:
            raise ValueError(
                f"a load_balancer endpoint's name may be at most {SERVICE_NAME_MAX - len(NAME_PREFIX)} characters: "
                f"its Consul service {service!r} would be {len(service)}, and Nomad refuses service names "
                f"over {SERVICE_NAME_MAX} (got {len(self.name)})"
            )
        return self

    def spec_hash(self) -> str:
        """Stable digest of everything that shapes a worker: a change means a rolling replacement.
        Fields added later count only when set, so upgrading Skiff does not replace every worker."""
        data = self.model_dump(mode="json", exclude=_NOT_HASHED)
        for name in _HASHED_WHEN_SET:
            if data.get(name) == _DEFAULTS[name]:
                del data[name]
        # Scaling fields added later likewise leave the digest as it was while unset.
        for name in _LATER_SCALING_FIELDS:
            if data["scaling"][name] == ScalingSpec.model_fields[name].default:
                del data["scaling"][name]
        payload = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


_HASHED_WHEN_SET = ("concurrency", "volume", "secrets", "datacenters")
# Read by the gateway only: changing them must not replace a single worker.
_NOT_HASHED = {"rate_limits"}
_DEFAULTS = {name: EndpointSpec.model_fields[name].get_default(call_default_factory=True) for name in _HASHED_WHEN_SET}
