"""structlog JSON logs with request and org ids, and PHI kept out.

Log calls pass ids and counts, never patient data; the redaction processor is the safety net: any
key that names personal data (name, phone, email, body, address, date of birth, ...) has its value
replaced by "[redacted]", at any depth.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import structlog

PHI_KEYS = frozenset(
    {
        "name", "given_name", "family_name", "full_name", "first_name", "last_name",
        "phone", "phone_number", "phones", "mobile", "to", "from", "from_", "sender", "recipient",
        "email", "emails", "address", "body", "text", "message", "transcript", "content",
        "birth_date", "date_of_birth", "dob", "password", "token", "secret", "authorization",
        "api_key", "notes", "description", "subject",
    }
)
REDACTED = "[redacted]"


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in PHI_KEYS else _redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


def safe_frames(exc: BaseException, limit: int = 30) -> list[str]:
    """Where an exception came from (file:line in function), without its message or locals."""
    frames = traceback.extract_tb(exc.__traceback__)[-limit:]
    return [f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in frames]


def redact_phi(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in list(event_dict):
        if key == "event":
            continue
        if key.lower() in PHI_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


class _CurrentStdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stdout` is now (test runners swap it), never to a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _stdout_logger(*args: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stdout)


class _MessageFreeExceptions(logging.Filter):
    """Library log records (uvicorn, procrastinate) keep the exception type and frames, not its text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.error = type(exc).__name__
            record.frames = safe_frames(exc)
            record.exc_info = None
            record.exc_text = None
        return True


def configure(level: str = "INFO", *, json: bool = True, libraries: str = "WARNING") -> None:
    """The service's own logs at `level`; third-party libraries (uvicorn, procrastinate, alembic, the
    embedded PostgreSQL's pg_ctl command lines) at `libraries` (LOG_LEVEL_LIBRARIES, WARNING by
    default), or at `level` if that is stricter."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_phi,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_stdout_logger,
        cache_logger_on_first_use=False,
    )
    # Route the standard library (uvicorn, procrastinate, alembic) through the same redaction.
    handler = _CurrentStdout()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[structlog.stdlib.add_logger_name,
                               structlog.stdlib.ExtraAdder(allow=["error", "frames"]), *shared],
        )
    )
    handler.addFilter(_MessageFreeExceptions())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    own, others = logging.getLevelName(level.upper()), logging.getLevelName(libraries.upper())
    root.setLevel(max(own, others))
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, own))
