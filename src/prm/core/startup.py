"""What the service is configured to do, and what is unsafe about it in production.

`problems(settings)` lists, one clear sentence each, the settings that make a production deployment
unsafe; `prm serve`, `prm worker` and `create_app` refuse to start in production while there is
any, and `prm check-config` prints them and exits non-zero. `report(settings)` is the startup line
in the log: what is configured, never a secret (only whether one is set and its length).
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from prm.settings import Settings

MIN_SECRET_KEY_BYTES = 32


class UnsafeConfiguration(RuntimeError):
    """Production settings that must be fixed before the service starts."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("unsafe production configuration:\n" + "\n".join(f"- {p}" for p in problems))
        self.problems = problems


def problems(settings: Settings) -> list[str]:
    """Unsafe settings for ENVIRONMENT=production (empty elsewhere, and when all is well)."""
    if settings.environment != "production":
        return []
    found: list[str] = []
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else ""
    if not secret:
        found.append("SECRET_KEY is not set: production needs a random key of at least "
                     f"{MIN_SECRET_KEY_BYTES} bytes (python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    elif len(secret.encode()) < MIN_SECRET_KEY_BYTES:
        found.append(f"SECRET_KEY is {len(secret.encode())} bytes long: production needs at least "
                     f"{MIN_SECRET_KEY_BYTES} random bytes")
    if not settings.database_url and not settings.allow_embedded_database:
        found.append("DATABASE_URL is not set: production needs a PostgreSQL server (set "
                     "ALLOW_EMBEDDED_DATABASE=true only to run the embedded one on purpose)")
    if "*" in settings.cors_origins:
        found.append("CORS_ORIGINS contains '*': any web site could call the API from a browser; "
                     "list the origins of your front ends")
    for entry in settings.trusted_proxies:
        if ipaddress.ip_network(entry.strip(), strict=False).prefixlen == 0:
            found.append(f"TRUSTED_PROXIES contains {entry}: every client could forge its address; "
                         "list only your proxies' addresses")
    if settings.db_echo:
        found.append("DB_ECHO=true logs every SQL statement with its values (patient data): turn it off")
    if getattr(settings, "outbound_allow_private_targets", False):
        found.append("OUTBOUND_ALLOW_PRIVATE_TARGETS=true lets webhook and n8n URLs reach internal services: "
                     "turn it off")
    if not settings.public_base_url.startswith("https://"):
        found.append(f"PUBLIC_BASE_URL is {settings.public_base_url}: production needs the public https:// "
                     "address (webhook signatures and links are built from it)")
    return found


def check(settings: Settings) -> None:
    """Raise `UnsafeConfiguration` when `problems(settings)` finds any."""
    found = problems(settings)
    if found:
        raise UnsafeConfiguration(found)


def describe_database(settings: Settings) -> str:
    """The database without credentials: `postgresql://host:5432/prm` or `embedded (<dir>)`."""
    if not settings.database_url:
        return f"embedded ({settings.data_dir / 'pgdata'})"
    parts = urlsplit(settings.database_url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.split('+', 1)[0]}://{host}{port}{parts.path}"


def describe_redis(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or 'localhost'}{port}{parts.path}"


def report(settings: Settings) -> dict[str, Any]:
    """The startup report: what is configured, without secrets."""
    secret = settings.secret_key.get_secret_value() if settings.secret_key is not None else None
    return {
        "environment": settings.environment,
        "public_base_url": settings.public_base_url,
        "database": describe_database(settings),
        "redis": describe_redis(settings.redis_url),
        "rate_limits": {"login": settings.rate_limit_login, "login_account": settings.rate_limit_login_account,
                        "webhooks": settings.rate_limit_webhooks,
                        "backend": "redis" if settings.redis_url else "memory"},
        "trusted_proxies": list(settings.trusted_proxies),
        "forwarded_header_style": settings.forwarded_header_style,
        "cors_origins": list(settings.cors_origins),
        "api_docs": settings.docs_enabled,
        "max_request_body_bytes": settings.max_request_body_bytes,
        "request_body_timeout_seconds": settings.request_body_timeout_seconds,
        "signing_key": f"set ({len(secret.encode())} bytes)" if secret else "generated in the data directory",
        # one string: the log's PHI redaction would blank a key named "email"
        "messaging_providers": " ".join(
            f"{channel}={getattr(settings, f'messaging_provider_{channel}')}"
            for channel in ("sms", "whatsapp", "voice", "email")),
        "twilio_configured": bool(settings.twilio_account_sid and settings.twilio_auth_token),
        "run_worker": settings.run_worker,
        "problems": problems(settings),
    }
