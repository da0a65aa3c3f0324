from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from prm.core import clock
from prm.core.db import libpq_url, sqlalchemy_url
from prm.core.errors import NotFound, ValidationFailed
from prm.core.jobs import BackoffRetry, PermanentFailure
from prm.core.logging import REDACTED, redact_phi, safe_frames
from prm.identity.scopes import ALL_SCOPES, ROLE_SCOPES, scopes_for


class _Job:
    def __init__(self, attempts: int) -> None:
        self.attempts = attempts


def test_backoff_is_exponential_capped_and_bounded() -> None:
    retry = BackoffRetry(max_attempts=10, base_seconds=5, max_seconds=60)
    with clock.frozen(datetime(2026, 1, 1, tzinfo=UTC)):
        waits = []
        for attempts in range(6):
            decision = retry.get_retry_decision(exception=RuntimeError(), job=_Job(attempts))
            assert decision is not None
            waits.append((decision.retry_at - clock.now()).total_seconds())
    for attempts, wait in enumerate(waits):
        expected = min(60, 5 * 2**attempts)
        assert expected * 0.9 <= wait <= expected * 1.1
    assert retry.get_retry_decision(exception=RuntimeError(), job=_Job(9)) is None
    assert retry.get_retry_decision(exception=PermanentFailure(), job=_Job(0)) is None


def test_clock_freezes_and_advances() -> None:
    start = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    with clock.frozen(start) as c:
        assert clock.now() == start
        c.advance(timedelta(hours=1))
        assert clock.now() == start + timedelta(hours=1)
    assert clock.now() != start + timedelta(hours=1)
    with pytest.raises(ValueError), clock.frozen(datetime(2026, 1, 1)):  # naive
        pass


def test_phi_is_redacted_at_any_depth() -> None:
    event = {"event": "message.sent", "phone": "+441234", "payload": {"body": "hi", "id": 3},
             "items": [{"email": "a@b"}], "count": 2}
    out = redact_phi(None, "info", event)
    assert out["phone"] == REDACTED and out["payload"] == {"body": REDACTED, "id": 3}
    assert out["items"] == [{"email": REDACTED}] and out["count"] == 2 and out["event"] == "message.sent"
    assert "+441234" not in json.dumps(out)


def test_safe_frames_omit_the_message() -> None:
    try:
        raise ValueError("patient Jane Doe +44 7700 900123")
    except ValueError as exc:
        frames = safe_frames(exc)
    assert frames and "Jane" not in " ".join(frames)


def test_database_urls_are_normalised() -> None:
    assert sqlalchemy_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert sqlalchemy_url("postgresql+asyncpg://h/db") == "postgresql+psycopg://h/db"
    assert libpq_url("postgresql+psycopg://h/db?host=/tmp") == "postgresql://h/db?host=/tmp"
    with pytest.raises(ValueError):
        sqlalchemy_url("mysql://h/db")


def test_roles_map_to_known_scopes() -> None:
    for role, scopes in ROLE_SCOPES.items():
        assert scopes <= ALL_SCOPES, role
    assert "admin" in scopes_for("admin") and "admin" not in scopes_for("coordinator")
    assert "patients:write" not in scopes_for("support_agent")
    with pytest.raises(ValueError):
        scopes_for("janitor")


def test_problem_documents() -> None:
    problem = ValidationFailed.field("phones.0.number", "not a phone number").problem("/patients")
    assert problem["status"] == 422 and problem["errors"][0]["field"] == "phones.0.number"
    assert NotFound("nope").problem()["type"].endswith("/not_found")


def test_library_exceptions_are_logged_without_their_message(capsys) -> None:
    import logging

    import structlog

    from prm.core.logging import configure

    # restore the logging set-up afterwards: it would keep writing to capsys's stream once closed
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure("INFO", json=True)
    try:
        try:
            raise RuntimeError("Jane Doe +44 7700 900123")
        except RuntimeError:
            logging.getLogger("procrastinate.worker").exception("Job failed")
        out = capsys.readouterr().out
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)
    line = json.loads(out.strip().splitlines()[-1])
    assert line["error"] == "RuntimeError" and line["frames"]
    assert "Jane" not in out and "7700" not in out
