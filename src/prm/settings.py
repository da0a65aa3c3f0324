"""One settings object for the whole service, read from the environment and `.env`.

Every field here is documented in `deploy/.env.example`; `tests/unit/test_settings.py` fails when
the two disagree. Secrets are `SecretStr`, so they never show up in a repr or a log line.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- runtime -------------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    # Third-party libraries (uvicorn, procrastinate, alembic, embedded PostgreSQL): WARNING unless asked.
    log_level_libraries: str = "WARNING"
    log_json: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    # Blank: derived from HOST and PORT (see `derived_public_base_url`), so `PORT=8791 make run` checks
    # Twilio signatures against the URL it really serves on.
    public_base_url: str = ""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- edge: proxies, request bodies, API docs (issue 9) ----------------------------------------
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    forwarded_header_style: Literal["x-forwarded", "forwarded"] = "x-forwarded"
    max_request_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    request_body_timeout_seconds: float = Field(default=20.0, gt=0)
    api_docs: bool | None = None

    @field_validator("trusted_proxies", mode="after")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        for entry in value:  # the same parsing as core.proxy.parse_networks (settings sit below core)
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @property
    def docs_enabled(self) -> bool:
        """`/docs`, `/redoc` and `/openapi.json`: API_DOCS, else on except in production."""
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    # --- database --------------------------------------------------------------------------------
    database_url: str | None = None
    prm_data_dir: Path = Path(".prm")
    # Every connection a process may hold is a pooled one, kept when returned: SQLAlchemy closes an
    # "overflow" connection when it is returned to a full pool, so a burst larger than the pool opened
    # a PostgreSQL connection per request (at 32 clients on 2 processes, 10 + 10 served 301
    # bookings/s, p95 196 ms; 20 + 0 served 515/s, p95 98 ms: the same 20 connections at most)
    db_pool_size: int = 20
    db_max_overflow: int = 0
    db_echo: bool = False
    allow_embedded_database: bool = False
    # reliability (issue 10): a request waits at most this long for a pool connection (then 503)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_connect_timeout_seconds: int = Field(default=5, ge=1)

    # --- auth ------------------------------------------------------------------------------------
    secret_key: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    access_token_ttl_minutes: int = 60

    # --- serving (issue 19) ------------------------------------------------------------------------
    # API processes of `prm serve` (its --workers): unset = the cores in production, 1 in development
    web_concurrency: int | None = Field(default=None, ge=1)
    # how long a checked credential (API key, staff user) is trusted without asking the database
    # again: the most a revocation or deactivation takes to reach another process (0: never cached)
    auth_cache_seconds: float = Field(default=5.0, ge=0, le=60)
    # signed Twilio messages: "deferred" stores the event and queues one job to process it (the
    # fast path), "inline" processes it in the request; unset = deferred in production only
    webhook_ingest: Literal["inline", "deferred"] | None = None

    # --- jobs ------------------------------------------------------------------------------------
    run_worker: bool = True
    worker_concurrency: int = 4
    job_max_attempts: int = 8
    job_retry_base_seconds: int = 5
    job_retry_max_seconds: int = 3600
    # reliability (issue 10): heartbeats, stalled-job recovery, pruning, reconnecting workers
    job_heartbeat_seconds: float = Field(default=10.0, gt=0)
    job_stalled_after_seconds: float = Field(default=30.0, gt=0)
    job_recovery_interval_seconds: int = Field(default=60, ge=1, le=3600)
    job_retention_hours: int = Field(default=168, ge=1)
    job_failed_retention_hours: int = Field(default=720, ge=1)
    worker_reconnect_max_seconds: float = Field(default=30.0, gt=0)
    worker_give_up_seconds: float = Field(default=600.0, ge=0)
    worker_shutdown_seconds: float = Field(default=30.0, ge=0)
    # a worker is woken after each commit that queued jobs (`prm.core.wakeups`); it also looks for
    # jobs this often, for those queued by anything that does not wake it and for scheduled ones
    worker_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # how much lower the job worker's CPU priority is than the API's (`nice`, 0-19): on a machine the
    # two share, a burst of requests is served first and the jobs it queued run just after
    worker_nice: int = Field(default=10, ge=0, le=19)

    # --- redis, rate limits, idempotency ---------------------------------------------------------
    redis_url: str | None = None
    rate_limit_login: str = "10/minute"
    rate_limit_login_account: str = "10/15minutes"
    rate_limit_webhooks: str = "600/minute"
    rate_limit_agent_runs: str = "30/minute"  # per credential: each run spends model tokens
    idempotency_ttl_hours: int = 24
    idempotency_max_body_bytes: int = Field(default=1024 * 1024, ge=1)

    # --- patients --------------------------------------------------------------------------------
    default_phone_region: str = "US"
    patient_duplicate_threshold: float = Field(default=0.7, ge=0, le=1)
    patient_search_similarity: float = Field(default=0.35, ge=0, le=1)
    consent_default_ai_processing: bool = True
    consent_default_ehr_export: bool = True
    # Intake data kept in the patient's record: asked for (recorded when linking) unless set here.
    consent_default_intake: bool = False

    # --- appointments ----------------------------------------------------------------------------
    # "1d,2h": days are local calendar days (same wall-clock time, in the appointment's zone), hours and
    # minutes are absolute; a plain number is minutes. REMINDER_OFFSETS_MINUTES (the old name) still works.
    reminder_offsets: str = Field(
        default="1d,2h", validation_alias=AliasChoices("reminder_offsets", "reminder_offsets_minutes")
    )

    @field_validator("reminder_offsets")
    @classmethod
    def _offsets(cls, value: str) -> str:
        from prm.core.reminder_offsets import normalise

        try:
            return normalise(str(value))
        except ValueError as exc:
            raise ValueError(f"REMINDER_OFFSETS: {exc}") from None

    # --- notifications ---------------------------------------------------------------------------
    appointment_notifications: str = "booked,rescheduled,cancelled"

    @field_validator("appointment_notifications")
    @classmethod
    def _appointment_notifications(cls, value: str) -> str:
        parts = [p.strip().lower() for p in value.split(",") if p.strip()]
        unknown = [p for p in parts if p not in ("booked", "rescheduled", "cancelled")]
        if unknown:
            raise ValueError(
                "APPOINTMENT_NOTIFICATIONS takes booked, rescheduled and/or cancelled, comma-separated"
            )
        return ",".join(dict.fromkeys(parts))

    # --- messaging -------------------------------------------------------------------------------
    messaging_provider_sms: Literal["sandbox", "twilio"] = "sandbox"
    messaging_provider_whatsapp: Literal["sandbox", "twilio"] = "sandbox"
    messaging_provider_voice: Literal["sandbox", "twilio"] = "sandbox"
    messaging_provider_email: Literal["sandbox", "smtp"] = "sandbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_timeout_seconds: float = 10.0
    smtp_host: str = "localhost"
    smtp_port: int = 587
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_use_tls: bool = False
    smtp_starttls: bool = True
    smtp_from: str = "PRM <no-reply@localhost>"
    smtp_timeout_seconds: float = Field(default=30.0, gt=0)
    communication_max_attempts: int = 5
    communication_retry_base_seconds: int = 30
    communication_retry_max_seconds: int = 3600

    # --- media -----------------------------------------------------------------------------------
    media_storage: Literal["local", "s3"] = "local"
    media_s3_bucket: str | None = None
    media_s3_endpoint_url: str | None = None
    media_s3_region: str = "us-east-1"
    media_s3_access_key_id: str | None = None
    media_s3_secret_access_key: SecretStr | None = None
    media_upload_url_ttl_seconds: int = Field(default=900, ge=30, le=7 * 24 * 3600)
    media_download_url_ttl_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    media_provider_url_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)
    media_max_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    media_retention_days: int = Field(default=30, ge=0)
    media_download_timeout_seconds: float = Field(default=30.0, gt=0)

    # --- integrations (outbound webhooks, n8n) -----------------------------------------------------
    outbound_allow_private_targets: bool = False
    outbound_webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    outbound_webhook_disable_after: int = Field(default=5, ge=1)
    n8n_jwt_ttl_seconds: int = Field(default=300, ge=30, le=3600)

    # --- fhir (EHR sync) ---------------------------------------------------------------------------
    fhir_sync_max_attempts: int = Field(default=8, ge=1, le=50)
    fhir_sync_retry_base_seconds: float = Field(default=30.0, gt=0, le=3600)
    fhir_sync_timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    # --- agents ------------------------------------------------------------------------------------
    agents_redact_inputs: bool = True
    agents_run_timeout_seconds: float = Field(default=120, gt=0, le=900)
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1:*", "localhost:*", "[::1]:*"])

    # --- demo ------------------------------------------------------------------------------------
    seed_demo: bool = True

    # --- conversations and tickets ---------------------------------------------------------------
    assistant_enabled: bool = True
    assistant_max_failures: int = Field(default=3, ge=1)
    assistant_stale_minutes: int = Field(default=120, ge=1)
    assistant_slots_per_offer: int = Field(default=5, ge=1, le=9)
    assistant_search_days: int = Field(default=14, ge=1)
    ticket_sla_urgent_hours: float = Field(default=1, gt=0)
    ticket_sla_high_hours: float = Field(default=4, gt=0)
    ticket_sla_normal_hours: float = Field(default=24, gt=0)
    ticket_sla_low_hours: float = Field(default=72, gt=0)
    ticket_urgent_keywords: Annotated[list[str], NoDecode] = Field(default_factory=lambda: [
        "chest pain", "bleeding", "can't breathe", "cannot breathe", "difficulty breathing", "unconscious",
        "suicidal", "overdose", "stroke", "seizure", "severe pain", "dolor de pecho", "sangrado",
    ])
    ticket_auto_assign_roles: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["support_agent", "coordinator"])

    # --- AI providers (embeddings, LLM, speech-to-text) and search --------------------------------
    embeddings_provider: Literal["hashing", "local", "openai"] = "hashing"
    embeddings_local_model_path: Path | None = None
    embeddings_openai_model: str = "text-embedding-3-small"
    llm_provider: Literal["offline", "openai"] = "offline"
    llm_model: str = "gpt-4o-mini"
    speech_provider: Literal["offline", "openai"] = "offline"
    speech_model: str = "whisper-1"
    openai_api_key: SecretStr | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    openai_timeout_seconds: float = Field(default=30.0, gt=0)
    openai_max_retries: int = Field(default=3, ge=0, le=10)
    openai_max_retry_wait_seconds: float = Field(default=20.0, ge=0)
    search_candidates_per_side: int = Field(default=40, ge=1, le=1000)
    search_rrf_k: int = Field(default=60, ge=1)
    search_min_similarity: float = Field(default=0.2, ge=-1, le=1)
    search_chunk_gap_minutes: int = Field(default=30, ge=1)
    search_chunk_max_chars: int = Field(default=1200, ge=200, le=8000)

    @field_validator("database_url", "redis_url", "twilio_account_sid", "twilio_auth_token", "smtp_username",
                     "smtp_password", "api_docs", "media_s3_bucket", "media_s3_endpoint_url",
                     "media_s3_access_key_id", "media_s3_secret_access_key", "openai_api_key",
                     "embeddings_local_model_path", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cors_origins", "trusted_proxies", "ticket_urgent_keywords", "ticket_auto_assign_roles",
                     "mcp_allowed_hosts", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        """Comma-separated (`a,b`), or a JSON list (`["a", "b"]`), from the environment."""
        if isinstance(value, str) and value.lstrip().startswith("["):
            return json.loads(value)
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    _public_base_url_derived: bool = PrivateAttr(default=False)

    @model_validator(mode="after")
    def _derive_public_base_url(self) -> Settings:
        if not self.public_base_url.strip():
            self.__dict__["public_base_url"] = derived_public_base_url(self.host, self.port)
            self._public_base_url_derived = True
        else:
            self.__dict__["public_base_url"] = self.public_base_url.strip().rstrip("/")
        return self

    def serving_at(self, host: str | None, port: int | None) -> Settings:
        """These settings for a server bound to `host`/`port` (CLI options over HOST/PORT).

        A derived PUBLIC_BASE_URL follows the address; an explicit one is kept as given.
        """
        host = host or self.host
        port = port or self.port
        update: dict[str, object] = {"host": host, "port": port}
        if self._public_base_url_derived:
            update["public_base_url"] = derived_public_base_url(host, port)
        return self.model_copy(update=update)

    @property
    def webhooks_deferred(self) -> bool:
        """Whether inbound messages are processed by a job rather than in the webhook's request."""
        return (self.webhook_ingest or ("deferred" if self.environment == "production" else "inline")) == "deferred"

    @property
    def data_dir(self) -> Path:
        return self.prm_data_dir.resolve()

    def jwt_secret(self) -> str:
        """The signing key for access tokens.

        Production must set `SECRET_KEY`. Elsewhere a random key is generated once and kept in the
        data directory, so tokens survive a restart of `make run`.
        """
        if self.environment == "production":
            key = self.secret_key.get_secret_value() if self.secret_key is not None else ""
            if len(key.encode()) < 32:
                raise RuntimeError("SECRET_KEY of at least 32 bytes must be set when ENVIRONMENT=production")
            return key
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        return _persisted_secret(self.data_dir / "secret_key", lambda: secrets.token_urlsafe(48))

    def twilio_webhook_token(self) -> str | None:
        """The token that verifies (and, for `prm simulate`, signs) Twilio webhooks.

        `TWILIO_AUTH_TOKEN` when set. In development without one, a random token is generated once
        and kept in the data directory (like the secret key), so inbound messaging can be tried
        locally; elsewhere None (every Twilio webhook is refused).
        """
        if self.twilio_auth_token is not None:
            return self.twilio_auth_token.get_secret_value()
        if self.environment != "development":
            return None
        return _persisted_secret(self.data_dir / "twilio_auth_token", lambda: secrets.token_hex(16))


def derived_public_base_url(host: str, port: int) -> str:
    """`http://host:port`, with a wildcard bind address replaced by the loopback one."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - naming the wildcard, not binding to it
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _persisted_secret(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
