"""Settings from environment variables (prefix SKIFF_) and an optional skiff.toml.

Precedence, highest first: constructor arguments (CLI flags), environment, skiff.toml, defaults.
The defaults are the embedded mode: nothing to install, everything under `state_dir`.

Nomad's and Consul's own variables are read too, as their CLIs read them (NOMAD_ADDR,
NOMAD_TOKEN, NOMAD_NAMESPACE, NOMAD_REGION, NOMAD_CACERT, NOMAD_CLIENT_CERT, NOMAD_CLIENT_KEY,
CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, CONSUL_CACERT), with the SKIFF_ name winning where both are
set: a Nomad task gets its workload token as NOMAD_TOKEN (client/taskenv/env.go), and
nomad/controller.nomad.hcl sets NOMAD_CACERT.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from skiff_core.spec import MAX_RATE_WINDOW_S, RateLimits


def _also(name: str, *standard: str) -> AliasChoices:
    """The SKIFF_ variable first, then the standard ones (a validation_alias replaces env_prefix,
    so SKIFF_ is spelled out); skiff.toml and arguments use the field name (populate_by_name)."""
    return AliasChoices(f"SKIFF_{name.upper()}", *standard)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SKIFF_", toml_file="skiff.toml", extra="ignore", populate_by_name=True
    )

    # Which implementation of each seam. Only skiff_core.backends reads these.
    queue: Literal["sqlite", "sqs"] = "sqlite"
    store: Literal["sqlite", "redis"] = "sqlite"
    orchestrator: Literal["local", "nomad"] = "local"
    discovery: Literal["local", "consul"] = "local"
    payloads: Literal["files", "s3"] = "files"

    state_dir: Path = Path(".skiff")
    endpoints_dir: Path = Path("examples/endpoints")
    host: str = "127.0.0.1"
    port: int = 8000
    # `skiff controller`: serve /healthz, /v1/status and /metrics on this port (None: serve nothing).
    controller_port: int | None = None
    # The admin key; when unset, `skiff up` generates one and keeps it in <state_dir>/api-key.
    api_key: str | None = None
    # How long a gateway trusts what it read of a client key (created with `skiff keys`): a
    # revoked key stops working on every replica within this long.
    key_cache_s: float = Field(default=5.0, ge=0, le=300)

    # Rate limits per key, endpoint and route class, shared by every replica through the store.
    # Unset classes keep Runpod's numbers (skiff_core.spec.RUNPOD_RATE_LIMITS); endpoint files
    # may override them with a `rate_limits` block.
    rate_limits: RateLimits = Field(default_factory=RateLimits)
    rate_limit_window_s: float = Field(default=10.0, gt=0, le=MAX_RATE_WINDOW_S)
    rate_limits_enabled: bool = True
    # The URL workers use to reach the gateway (defaults to http://host:port).
    public_url: str | None = None

    # Leases: a job's queue lease is renewed by the worker's pings, so a dead worker's job comes
    # back after at most this long even when its execution timeout is hours.
    lease_s: float = Field(default=30.0, gt=0)
    ping_interval_s: float = Field(default=10.0, gt=0)
    # A worker that has not pinged (nor taken a job) for this long is considered gone.
    worker_lost_after_s: float = Field(default=30.0, gt=0)
    # A worker not ready this long after launch (no job-take; for load_balancer endpoints no
    # passing health check) is replaced: a hung start must not hold a max_workers slot forever.
    # Generous by default: big images and model loads take minutes.
    worker_startup_timeout_s: float = Field(default=900.0, gt=0)
    # Embedded mode: a stopping worker gets SIGTERM, this long to finish the job in hand, then
    # SIGKILL (in a cluster, the Nomad job's kill_timeout plays this part).
    worker_stop_grace_s: float = Field(default=10.0, ge=0)
    # Long polls held by the gateway (job-take, job-stop, runsync default wait).
    take_wait_s: float = Field(default=20.0, ge=0)
    runsync_wait_s: float = Field(default=90.0, ge=0)
    # Bodies larger than this go to the payload store and travel by reference.
    payload_inline_max_bytes: int = Field(default=256 * 1024, ge=1024)
    max_run_body_bytes: int = 10 * 1024 * 1024
    max_runsync_body_bytes: int = 20 * 1024 * 1024
    webhook_attempts: int = Field(default=5, ge=1)
    # load_balancer endpoints: how long a request waits for a healthy worker (one may be starting
    # from zero) before it gets 503 with Retry-After.
    lb_hold_s: float = Field(default=60.0, gt=0)

    # Cluster backends.
    sqs_endpoint_url: str | None = None
    sqs_queue_prefix: str = "skiff-"
    # SQS bills per request: sends and deletes are coalesced into batch requests of up to 10,
    # a lone one waiting at most this long for company; job-takes share receives of up to 10.
    # sqs_batching = false makes one request per message (the behaviour before batching).
    sqs_batching: bool = True
    sqs_batch_linger_ms: float = Field(default=5.0, ge=0, le=1000)
    aws_region: str = "us-east-1"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "skiff:"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "payloads/"

    # Cluster orchestration; Nomad's and Consul's standard variables too (module docstring).
    nomad_addr: str = Field(default="http://127.0.0.1:4646", validation_alias=_also("nomad_addr", "NOMAD_ADDR"))
    nomad_token: str | None = Field(default=None, validation_alias=_also("nomad_token", "NOMAD_TOKEN"))
    nomad_namespace: str = Field(default="default", validation_alias=_also("nomad_namespace", "NOMAD_NAMESPACE"))
    nomad_region: str | None = Field(default=None, validation_alias=_also("nomad_region", "NOMAD_REGION"))
    nomad_datacenters: list[str] = Field(default_factory=lambda: ["dc1"])
    nomad_node_pool: str | None = None
    # The controller keeps each docker endpoint's pre-pull job (skiff_core.nomad.prepull) in step
    # with its image. Off by default: it pulls on every eligible node of the pool, wanted or not.
    prepull: bool = False
    # CA bundle for a TLS-only Nomad API, and a client certificate where it verifies clients.
    nomad_cacert: str | None = Field(default=None, validation_alias=_also("nomad_cacert", "NOMAD_CACERT"))
    nomad_client_cert: str | None = Field(
        default=None, validation_alias=_also("nomad_client_cert", "NOMAD_CLIENT_CERT")
    )
    nomad_client_key: str | None = Field(default=None, validation_alias=_also("nomad_client_key", "NOMAD_CLIENT_KEY"))
    # The name to check Nomad's certificate against when the address is an IP or a load balancer
    # (Nomad's own certificates name "server.<region>.nomad").
    nomad_tls_server_name: str | None = Field(
        default=None, validation_alias=_also("nomad_tls_server_name", "NOMAD_TLS_SERVER_NAME")
    )
    consul_addr: str = Field(default="http://127.0.0.1:8500", validation_alias=_also("consul_addr", "CONSUL_HTTP_ADDR"))
    consul_token: str | None = Field(default=None, validation_alias=_also("consul_token", "CONSUL_HTTP_TOKEN"))
    consul_cacert: str | None = Field(default=None, validation_alias=_also("consul_cacert", "CONSUL_CACERT"))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _cluster_choices_complete(self) -> Settings:
        if self.payloads == "s3" and not self.s3_bucket:
            raise ValueError('payloads = "s3" needs a bucket: set SKIFF_S3_BUCKET or s3_bucket in skiff.toml')
        if bool(self.nomad_client_cert) != bool(self.nomad_client_key):
            raise ValueError("a Nomad client certificate needs its key: set NOMAD_CLIENT_CERT and NOMAD_CLIENT_KEY")
        return self

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "skiff.db"
