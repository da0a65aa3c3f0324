"""Pydantic field types and validators shared by the schemas of every domain."""

from __future__ import annotations

from datetime import time
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

# PostgreSQL `integer` / `bigint` columns: larger values are a 422, not a database error.
MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


def reject_null(value: Any) -> Any:
    """A PATCH field whose column is NOT NULL: left out means unchanged, null is a 422 naming it.

    Use as `_not_null = field_validator("name", "timezone", mode="before")(reject_null)`.
    """
    if value is None:
        raise ValueError("may be left out, but not null")
    return value


def _time_text(value: Any) -> Any:
    # Pydantic would read a number as seconds after midnight *in UTC*: refuse, like any non-text.
    if not isinstance(value, str | time):
        raise ValueError("must be a time of day as text, e.g. 09:30")
    return value


def _zone_less(value: time) -> time:
    if value.tzinfo is not None:
        raise ValueError("must be a local wall-clock time, without a zone offset")
    return value


# A wall-clock time without a zone ("09:00" / "09:00:00"). JSON Schema's `time` format demands a
# zone offset, so the document describes it with a pattern instead.
LocalTime = Annotated[
    time,
    BeforeValidator(_time_text),
    AfterValidator(_zone_less),
    WithJsonSchema(
        {"type": "string", "pattern": r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$", "examples": ["09:00:00"]}
    ),
]
