"""Which adapter serves a channel, built from settings.

The settings are those given to `configure(settings)` (the app and tests call it), else the
process settings from the environment. Credentials only ever come from here.
"""

from __future__ import annotations

from prm.adapters.channels import PermanentDeliveryError
from prm.adapters.smtp import SmtpChannel
from prm.adapters.twilio import TwilioChannel
from prm.settings import Settings, get_settings

_configured: Settings | None = None


def configure(settings: Settings | None) -> None:
    """Use `settings` for every adapter built from now on (None: back to the environment)."""
    global _configured
    _configured = settings


def settings() -> Settings:
    return _configured if _configured is not None else get_settings()


def default_provider(channel: str) -> str:
    return str(getattr(settings(), f"messaging_provider_{channel}"))


def twilio() -> TwilioChannel:
    s = settings()
    if not s.twilio_account_sid or s.twilio_auth_token is None:
        raise PermanentDeliveryError(
            "Twilio is not configured (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)",
            code="provider_not_configured",
        )
    return TwilioChannel(
        account_sid=s.twilio_account_sid,
        auth_token=s.twilio_auth_token.get_secret_value(),
        base_url=s.twilio_api_base_url,
        timeout_seconds=s.twilio_timeout_seconds,
    )


def smtp() -> SmtpChannel:
    s = settings()
    return SmtpChannel(
        host=s.smtp_host,
        port=s.smtp_port,
        username=s.smtp_username,
        password=s.smtp_password.get_secret_value() if s.smtp_password else None,
        use_tls=s.smtp_use_tls,
        start_tls=None if s.smtp_starttls else False,
        timeout_seconds=s.smtp_timeout_seconds,
    )


def twilio_auth_token() -> str | None:
    """The token that verifies inbound Twilio signatures (generated in development, see Settings)."""
    return settings().twilio_webhook_token()


def public_base_url() -> str:
    return settings().public_base_url.rstrip("/")
