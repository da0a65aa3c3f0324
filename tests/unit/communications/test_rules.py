from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prm.communications.rules import (
    from_twilio_status,
    keyword,
    next_status,
    retry_delay,
    whatsapp_window_open,
)


@pytest.mark.parametrize(
    "body,expected",
    [
        ("STOP", "stop"),
        (" stop! ", "stop"),
        ("Unsubscribe", "stop"),
        ("baja", "stop"),
        ("START", "start"),
        ("unstop", "start"),
        ("please don't stop", None),
        ("", None),
        (None, None),
        ("Hello", None),
    ],
)
def test_keyword(body: str | None, expected: str | None) -> None:
    assert keyword(body) == expected


def test_whatsapp_window() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert whatsapp_window_open(now - timedelta(hours=23, minutes=59), now)
    assert not whatsapp_window_open(now - timedelta(hours=24), now)
    assert not whatsapp_window_open(None, now)


@pytest.mark.parametrize(
    "current,incoming,expected",
    [
        ("sent", "delivered", "delivered"),
        ("delivered", "sent", None),
        ("delivered", "read", "read"),
        ("sent", "undelivered", "undelivered"),
        ("delivered", "failed", None),
        ("failed", "delivered", None),
        ("queued", "sent", "sent"),
        ("sent", "sent", None),
        ("sent", "bogus", None),
    ],
)
def test_status_only_moves_forward(current: str, incoming: str, expected: str | None) -> None:
    assert next_status(current, incoming) == expected


def test_twilio_status_mapping_and_backoff() -> None:
    assert from_twilio_status("Delivered") == "delivered" and from_twilio_status("nope") is None
    assert retry_delay(1, base_seconds=30, max_seconds=100) == timedelta(seconds=30)
    assert retry_delay(5, base_seconds=30, max_seconds=100) == timedelta(seconds=100)
