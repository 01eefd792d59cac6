"""Settings from environment variables (prefix SKIFF_) and an optional skiff.toml.

Precedence, highest first: constructor arguments (CLI flags), environment, skiff.toml, defaults.
The defaults are the embedded mode: nothing to install, everything under `state_dir`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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
    # The client key; when unset, `skiff up` generates one and keeps it in <state_dir>/api-key.
    api_key: str | None = None
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
    aws_region: str = "us-east-1"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "skiff:"
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_prefix: str = "payloads/"

    # Cluster orchestration (Nomad's own env names are read by the CLI as well).
    nomad_addr: str = "http://127.0.0.1:4646"
    nomad_token: str | None = None
    nomad_namespace: str = "default"
    nomad_region: str | None = None
    nomad_datacenters: list[str] = Field(default_factory=lambda: ["dc1"])
    nomad_node_pool: str | None = None
    # CA bundle for a TLS-only Nomad API (Nomad's own CLI reads NOMAD_CACERT; so does `skiff deploy`).
    nomad_cacert: str | None = None
    consul_addr: str = "http://127.0.0.1:8500"
    consul_token: str | None = None

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
        return self

    @property
    def gateway_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "skiff.db"
