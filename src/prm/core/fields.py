"""Pydantic field types and validators shared by the schemas of every domain."""

from __future__ import annotations

import re
import unicodedata
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


# --- names -------------------------------------------------------------------------------------

# Unicode general categories that show nothing by themselves: separators (spaces), controls and
# format characters (zero-width space/joiner, bidi marks), surrogates, private-use and unassigned
# code points, and combining marks (which only decorate a base letter).
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Mc", "Me"})


def has_visible_character(text: str) -> bool:
    """True when `text` has at least one character of a visible category (letter, digit, punctuation,
    symbol): "\u200b\u200d" or "\u0301\u0301" or "   " have none."""
    return any(unicodedata.category(ch) not in _INVISIBLE_CATEGORIES for ch in text)


def _visible(value: str) -> str:
    if not has_visible_character(value):
        raise ValueError("must contain a visible character, not only spaces, zero-width or combining characters")
    return value


def _visible_or_empty(value: str) -> str:
    return value if value == "" else _visible(value)


# A name (person, practitioner, location, service, organisation, key...): length limits go in the
# field (`Name = Field(max_length=200)`); blank or invisible-only text is a 422 naming the field.
Name = Annotated[str, AfterValidator(_visible)]
# The same where the empty string means "not given" (e.g. a user's full name).
OptionalName = Annotated[str, AfterValidator(_visible_or_empty)]


# --- URIs --------------------------------------------------------------------------------------

# RFC 3986 absolute URI: scheme ":" then only URI characters (unreserved, reserved, "%XX"). No
# whitespace, controls or non-ASCII, which FHIR's `uri` type (`\S*`) and every consumer refuse.
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")
# A bare token such as "mrn" (mapped to urn:prm:identifier:<token> on export).
_SYSTEM_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def is_uri(text: str) -> bool:
    return _URI.fullmatch(text) is not None


def _identifier_system(value: str) -> str:
    if ":" in value:
        if not is_uri(value):
            raise ValueError("must be an absolute URI without spaces (e.g. urn:oid:2.16.840.1.113883.4.1 or "
                             "https://hospital.example/mrn), or a short code such as mrn")
    elif _SYSTEM_TOKEN.fullmatch(value) is None:
        raise ValueError("must be a short code of letters, digits, '.', '_' or '-' (such as mrn), or an "
                         "absolute URI")
    return value


# An identifier's system: a FHIR `uri` (checked at input, so what is stored always exports), or a
# short code such as "mrn".
IdentifierSystem = Annotated[str, AfterValidator(_identifier_system)]
