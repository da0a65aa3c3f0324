"""Phone numbers: parse anything a person or a provider sends, store E.164. Pure, no I/O."""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

# Provider and URI prefixes seen in the wild: "whatsapp:+34...", "tel:+1-...", "sms:..."
_PREFIX = re.compile(r"^\s*(?:whatsapp|tel|sms|sip|callto):", re.IGNORECASE)


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number, or not a possible one for its region."""


def normalise(raw: str, default_region: str = "US") -> str:
    """Return `raw` as E.164 (`+34612345678`), or raise `InvalidPhoneNumber`.

    Accepts spaces, dots, dashes, brackets, a leading `00`/`+`, national formats of
    `default_region` (an ISO 3166 alpha-2 code) and `whatsapp:`/`tel:` prefixes.
    """
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidPhoneNumber("empty phone number")
    text = _PREFIX.sub("", raw).strip()
    if len(text) > 40:
        raise InvalidPhoneNumber("too long to be a phone number")
    if text.startswith("00") and not text.startswith("000"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, (default_region or "US").upper())
    except NumberParseException:
        raise InvalidPhoneNumber("not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid number for its country")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def try_normalise(raw: str, default_region: str = "US") -> str | None:
    """`normalise`, or None when the text is not a valid number."""
    try:
        return normalise(raw, default_region)
    except InvalidPhoneNumber:
        return None


def is_region(code: str) -> bool:
    """True when `code` is a region phonenumbers knows (for validating settings)."""
    return code.upper() in phonenumbers.SUPPORTED_REGIONS
