"""Pure messaging rules: opt-out keywords, the WhatsApp 24-hour window, status progression."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from typing import Literal

from prm.adapters.twilio import TWILIO_STATUS as TWILIO_STATUS
from prm.adapters.twilio import from_twilio_status as from_twilio_status
from prm.core.backoff import backoff_seconds

CHANNELS = ("sms", "whatsapp", "email", "voice")
PURPOSES = ("care", "reminders", "marketing")
DIRECTIONS = ("inbound", "outbound")
OUTBOUND_STATUSES = ("queued", "sending", "sent", "delivered", "read", "failed", "undelivered", "cancelled")
INBOUND_STATUSES = ("received",)
STATUSES = OUTBOUND_STATUSES + INBOUND_STATUSES
FINAL_STATUSES = frozenset({"delivered", "read", "failed", "undelivered", "cancelled", "received"})

WHATSAPP_WINDOW = timedelta(hours=24)

# Twilio's standard opt-out / opt-in keywords, plus the Spanish ones our clinics' patients use —
# except CANCEL and YES: in a booking conversation they are answers to the assistant ("cancel" my
# appointment, "yes" book it), not consent changes (changed by the conversations module).
STOP_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "END", "QUIT", "OPTOUT", "BAJA"})
START_KEYWORDS = frozenset({"START", "UNSTOP", "SUBSCRIBE", "OPTIN", "ALTA"})

Keyword = Literal["stop", "start"]

ACKNOWLEDGEMENTS = {
    "stop": "You have been unsubscribed and will receive no more messages on this channel. Reply START to "
    "subscribe again.",
    "start": "You have been subscribed again and will receive messages on this channel. Reply STOP to unsubscribe.",
}


def _normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[\s\.\!\?,;:]+", " ", folded).strip().upper()


def keyword(body: str | None) -> Keyword | None:
    """`"stop"` or `"start"` when the whole message is an opt-out / opt-in keyword, else None.

    Only a message that *is* the keyword counts ("Stop!" yes, "please don't stop" no).
    """
    if not body:
        return None
    word = _normalise(body)
    if word in STOP_KEYWORDS:
        return "stop"
    if word in START_KEYWORDS:
        return "start"
    return None


def whatsapp_window_open(last_inbound_at: datetime | None, now: datetime) -> bool:
    """True while a free-form WhatsApp message is allowed: within 24 h of the last inbound one."""
    return last_inbound_at is not None and now - last_inbound_at < WHATSAPP_WINDOW


_RANK = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}


def next_status(current: str, incoming: str) -> str | None:
    """The status after a provider reports `incoming`, or None to ignore the report.

    Status only moves forward (a late `sent` never overwrites `delivered`); `failed`/`undelivered`
    end a message that has not been delivered yet; `read` implies delivery.
    """
    if incoming not in STATUSES or incoming == current:
        return None
    if current in {"failed", "undelivered", "cancelled", "received"}:
        return None
    if incoming in {"failed", "undelivered"}:
        return incoming if current not in {"delivered", "read"} else None
    if incoming in _RANK and current in _RANK:
        return incoming if _RANK[incoming] > _RANK[current] else None
    return None


def retry_delay(attempt: int, *, base_seconds: float, max_seconds: float) -> timedelta:
    """Exponential backoff after the `attempt`-th failed attempt (1-based), capped (no jitter)."""
    return timedelta(seconds=backoff_seconds(attempt - 1, base_seconds=base_seconds, max_seconds=max_seconds))
