"""Which adapter serves a channel, built once from the process settings.

`Adapters(settings)` is constructed at startup by `prm.context.Context.build` (in `create_app`, the
worker and the CLI) and reached through the context (`context.of(session).adapters` in services,
the `AppContext` dependency in routers). Credentials only ever come from here.
"""

from __future__ import annotations

from typing import Any

from prm.adapters import embeddings as _embeddings
from prm.adapters import llm as _llm
from prm.adapters import speech as _speech
from prm.adapters.channels import PermanentDeliveryError
from prm.adapters.smtp import SmtpChannel
from prm.adapters.twilio import TwilioChannel
from prm.settings import Settings


class Adapters:
    """The outside systems this process talks to, configured from its settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self._twilio: TwilioChannel | None = None
        if s.twilio_account_sid and s.twilio_auth_token is not None:
            self._twilio = TwilioChannel(
                account_sid=s.twilio_account_sid,
                auth_token=s.twilio_auth_token.get_secret_value(),
                base_url=s.twilio_api_base_url,
                timeout_seconds=s.twilio_timeout_seconds,
            )
        self._smtp = SmtpChannel(
            host=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            use_tls=s.smtp_use_tls,
            start_tls=None if s.smtp_starttls else False,
            timeout_seconds=s.smtp_timeout_seconds,
        )

    # --- AI providers (chosen by EMBEDDINGS_PROVIDER / LLM_PROVIDER / SPEECH_PROVIDER) -------------
    # Built on first use, one instance per configuration (the `from_settings` caches): the local
    # embedder loads its model lazily, and a provider without its key raises `AINotConfigured`.

    def embedder(self) -> _embeddings.Embedder:
        return _embeddings.from_settings(self.settings)

    def llm(self) -> _llm.LLM:
        return _llm.from_settings(self.settings)

    def speech(self) -> _speech.SpeechToText:
        return _speech.from_settings(self.settings)

    def search_quality(self) -> dict[str, Any]:
        """What `/ready` and the start-up log say about search (model, dimensions, quality)."""
        return _embeddings.describe(self.embedder())

    def default_provider(self, channel: str) -> str:
        return str(getattr(self.settings, f"messaging_provider_{channel}"))

    def twilio(self) -> TwilioChannel:
        if self._twilio is None:
            raise PermanentDeliveryError(
                "Twilio is not configured (TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN)",
                code="provider_not_configured",
            )
        return self._twilio

    def smtp(self) -> SmtpChannel:
        return self._smtp

    def twilio_auth_token(self) -> str | None:
        """The token that verifies inbound Twilio signatures (generated in development, see Settings)."""
        return self.settings.twilio_webhook_token()

    def public_base_url(self) -> str:
        return self.settings.public_base_url.rstrip("/")
