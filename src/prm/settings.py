"""One settings object for the whole service, read from the environment and `.env`.

Every field here is documented in `deploy/.env.example`; `tests/unit/test_settings.py` fails when
the two disagree. Secrets are `SecretStr`, so they never show up in a repr or a log line.
"""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- runtime -------------------------------------------------------------------------------
    environment: Literal["development", "test", "production"] = "development"
    log_level: str = "INFO"
    log_json: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    public_base_url: str = "http://127.0.0.1:8000"
    cors_origins: list[str] = Field(default_factory=list)

    # --- database --------------------------------------------------------------------------------
    database_url: str | None = None
    prm_data_dir: Path = Path(".prm")
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_echo: bool = False

    # --- auth ------------------------------------------------------------------------------------
    secret_key: SecretStr | None = None
    jwt_algorithm: str = "HS256"
    access_token_ttl_minutes: int = 60

    # --- jobs ------------------------------------------------------------------------------------
    run_worker: bool = True
    worker_concurrency: int = 4
    job_max_attempts: int = 8
    job_retry_base_seconds: int = 5
    job_retry_max_seconds: int = 3600

    # --- redis, rate limits, idempotency ---------------------------------------------------------
    redis_url: str | None = None
    rate_limit_login: str = "10/minute"
    rate_limit_webhooks: str = "600/minute"
    idempotency_ttl_hours: int = 24

    # --- patients --------------------------------------------------------------------------------
    default_phone_region: str = "US"
    patient_duplicate_threshold: float = Field(default=0.7, ge=0, le=1)
    patient_search_similarity: float = Field(default=0.35, ge=0, le=1)
    consent_default_ai_processing: bool = True
    consent_default_ehr_export: bool = True

    # --- appointments ----------------------------------------------------------------------------
    reminder_offsets_minutes: str = "1440,120"

    @field_validator("reminder_offsets_minutes")
    @classmethod
    def _offsets(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError("REMINDER_OFFSETS_MINUTES must be positive whole minutes, comma-separated")
        return ",".join(parts)

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

    # --- agents ------------------------------------------------------------------------------------
    agents_redact_inputs: bool = True
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

    @field_validator("database_url", "redis_url", "twilio_account_sid", "twilio_auth_token", "smtp_username",
                     "smtp_password", "media_s3_bucket", "media_s3_endpoint_url", "media_s3_access_key_id",
                     "media_s3_secret_access_key", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("cors_origins", "ticket_urgent_keywords", "ticket_auto_assign_roles", "mcp_allowed_hosts",
                     mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str) and not value.startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def data_dir(self) -> Path:
        return self.prm_data_dir.resolve()

    def jwt_secret(self) -> str:
        """The signing key for access tokens.

        Production must set `SECRET_KEY`. Elsewhere a random key is generated once and kept in the
        data directory, so tokens survive a restart of `make run`.
        """
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        if self.environment == "production":
            raise RuntimeError("SECRET_KEY must be set when ENVIRONMENT=production")
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip()


@lru_cache
def get_settings() -> Settings:
    return Settings()
