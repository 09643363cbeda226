"""One settings object, read from the environment and passed into every factory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the service reads from its environment (docs/api.md, Configuration)."""

    model_config = SettingsConfigDict(env_prefix="FLOWPORT_", extra="ignore")

    host: str = "127.0.0.1"
    http_port: int = 8080
    grpc_port: int = 50051
    admin_port: int = 9901
    # The gRPC health service alone, without TLS, on a port of its own (with --workers N, N
    # consecutive ports): for probes that cannot present a client certificate (Kubernetes').
    health_port: int | None = None
    # Envoy's admin interface (which answers /quitquitquit and /config_dump) and the metrics
    # port stay on loopback when FLOWPORT_HOST exposes the public port, unless told otherwise.
    admin_host: str = "127.0.0.1"
    # Prometheus text at /metrics; 0: not served.
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    data_dir: Path = Path(".flowport")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "FLOWPORT_DATABASE_URL")
    )

    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    # Seconds an LLM call may take before the node fails; streams reset it on every chunk.
    llm_timeout_s: float = 120.0

    # Outbound requests (http nodes, image and file URL inputs) may not reach private,
    # loopback or link-local addresses unless the host, IP or CIDR is listed here.
    # The variable is comma-separated: FLOWPORT_FETCH_ALLOW=127.0.0.1,10.0.0.0/8,api.internal
    fetch_allow: Annotated[list[str], NoDecode] = []
    fetch_max_bytes: int = 5_242_880
    fetch_timeout_s: float = 10

    rate_limit_per_key: int = 20
    # With a Redis URL the rate limits are shared by every replica; without, in-process.
    redis_url: str | None = None
    content_policy: Path | None = None
    # A session's memory is forgotten after this long without a run.
    session_ttl_s: float = 1800.0

    # Requests with a larger body are refused by Envoy with 413.
    max_body_bytes: int = 1_048_576
    # How long in-flight runs may go on after SIGTERM before the service stops.
    shutdown_grace_s: float = 10.0
    # A replica that has not renewed its lease for this long is taken for dead: the others
    # fail its runs. Each replica renews three times per lease.
    run_lease_s: float = Field(default=30.0, gt=0)
    # An SSE stream writes a `: ping` comment after this long without a frame.
    stream_heartbeat_s: float = Field(default=15.0, gt=0)
    # A stream's run goes on this long after its client went away, for the client to come
    # back for the rest through the run's events; nobody following it by then, it stops.
    stream_resume_s: float = Field(default=30.0, ge=0)
    # A run's log of events keeps its token frames up to this size (every other frame always).
    run_log_max_bytes: int = Field(default=1_048_576, ge=0)
    # Log entries are dropped this long after they were written.
    run_log_retention_s: float = Field(default=86_400.0, gt=0)
    # Jobs (background runs and webhook deliveries) this replica works on at once; 0: it
    # takes none, and only accepts runs for the others.
    jobs_concurrency: int = Field(default=10, ge=0)
    # Background runs an account may have waiting in the queue; past it, 429.
    max_queued_per_account: int = Field(default=100, ge=1)
    # Attempts to deliver a run's end to its webhook, the first included.
    webhook_max_attempts: int = Field(default=8, ge=1)
    # The wait before the second attempt; each next one waits twice as long (with jitter).
    webhook_backoff_s: float = Field(default=10.0, gt=0)
    # How long a receiver may take to answer one attempt.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # TLS (docs/api.md, Configuration; docs/operations.md, TLS). PEM files, read at start.
    # HTTPS on Envoy's public port, HTTP/2 and HTTP/1.1 by ALPN: its certificate chain and key.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # mTLS on the gRPC service's port: its certificate chain and key; it accepts only clients
    # whose certificate FLOWPORT_GRPC_TLS_CA signed.
    grpc_tls_cert: Path | None = None
    grpc_tls_key: Path | None = None
    # The CA (bundle) of the service's mTLS: the service accepts client certificates it signed,
    # and Envoy accepts a service certificate it signed.
    grpc_tls_ca: Path | None = None
    # The client certificate chain and key Envoy presents to the service.
    envoy_client_cert: Path | None = None
    envoy_client_key: Path | None = None
    # Flowport's own log lines from this level up; libraries log warnings only, unless DEBUG.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _tls_files_go_together(self) -> Settings:
        pairs = (
            ("FLOWPORT_TLS_CERT", self.tls_cert, "FLOWPORT_TLS_KEY", self.tls_key),
            (
                "FLOWPORT_GRPC_TLS_CERT",
                self.grpc_tls_cert,
                "FLOWPORT_GRPC_TLS_KEY",
                self.grpc_tls_key,
            ),
            (
                "FLOWPORT_ENVOY_CLIENT_CERT",
                self.envoy_client_cert,
                "FLOWPORT_ENVOY_CLIENT_KEY",
                self.envoy_client_key,
            ),
        )
        for first, first_value, second, second_value in pairs:
            if (first_value is None) != (second_value is None):
                raise ValueError(f"{first} and {second} are set together or not at all")
            if first_value is not None and first != "FLOWPORT_TLS_CERT" and not self.grpc_tls_ca:
                raise ValueError(f"{first} needs FLOWPORT_GRPC_TLS_CA, the CA of the mTLS")
        return self

    @property
    def grpc_tls(self) -> bool:
        """The service's port requires TLS with a client certificate."""
        return self.grpc_tls_cert is not None

    @property
    def envoy_upstream_tls(self) -> bool:
        """Envoy speaks mTLS to the service."""
        return self.envoy_client_cert is not None

    def bundled_envoy_problem(self) -> str | None:
        """Why the bundled Envoy could not reach the service as these settings have it."""
        if self.grpc_tls and not self.envoy_upstream_tls:
            return (
                "the service requires client certificates (FLOWPORT_GRPC_TLS_CERT) but Envoy "
                "has none: set FLOWPORT_ENVOY_CLIENT_CERT and FLOWPORT_ENVOY_CLIENT_KEY"
            )
        if self.envoy_upstream_tls and not self.grpc_tls:
            return (
                "Envoy would speak TLS (FLOWPORT_ENVOY_CLIENT_CERT) to a service without it: "
                "set FLOWPORT_GRPC_TLS_CERT and FLOWPORT_GRPC_TLS_KEY too"
            )
        return None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("fetch_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # NoDecode keeps pydantic-settings from reading the variable as JSON.
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'flowport.db').resolve()}"
