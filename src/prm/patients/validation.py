"""Validation of patient input: phones, emails, birth dates, languages, tags, identifiers."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from datetime import date, timedelta

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import clock
from prm.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from prm.identity import service as identity
from prm.patients import names, phones
from prm.patients.models import (
    Patient,
    PatientIdentifier,
)
from prm.patients.schemas import (
    EmailIn,
    IdentifierIn,
    PhoneIn,
)
from prm.settings import Settings

OLDEST_BIRTH_DATE = date(1870, 1, 1)
MAX_MERGE_CHAIN = 20
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


class PatientMoved(DomainError):
    """A read of a merged patient: the response is a redirect to the survivor."""

    status = 308
    default_code = "patient_merged"
    title = "Patient merged"

    def __init__(self, patient_id: uuid.UUID, survivor_id: uuid.UUID) -> None:
        super().__init__(f"Patient {patient_id} was merged into {survivor_id}",
                         merged_into_id=str(survivor_id))
        self.patient_id = patient_id
        self.survivor_id = survivor_id


def _settings(session: AsyncSession) -> Settings:
    return context.of(session).settings


async def _phone_region(session: AsyncSession, org_id: uuid.UUID) -> str:
    """The organisation's phone region (its own setting, else DEFAULT_PHONE_REGION)."""
    return (await identity.organisation_settings(session, org_id)).phone_region


def _not_found(patient_id: object) -> NotFound:
    return NotFound(f"Patient {patient_id} not found", code="patient_not_found")


def _merged_conflict(patient: Patient) -> Conflict:
    return Conflict(f"Patient {patient.id} was merged into {patient.merged_into_id}; change the survivor",
                    code="patient_merged", merged_into_id=str(patient.merged_into_id))


# --- validation ------------------------------------------------------------------------------------


def normalise_phone(raw: str, *, region: str, field: str = "phone") -> str:
    """`raw` in E.164 (numbers without a country code read in `region`), or a 422 naming `field`."""
    try:
        return phones.normalise(raw, region)
    except phones.InvalidPhoneNumber as exc:
        raise ValidationFailed.field(field, f"invalid phone number: {exc}", code="invalid_phone_number")


def normalise_email(raw: str, *, field: str = "email") -> str:
    """A syntactically valid address (domain lower-cased), or a 422 naming `field`."""
    try:
        result = validate_email(raw, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationFailed.field(field, f"invalid email address: {exc}", code="invalid_email")
    return str(result.normalized)


def _check_birth_date(value: date | None, field: str = "birth_date") -> None:
    if value is None:
        return
    # The latest "today" anywhere on Earth (UTC+14), so a birth today in Kiribati is not "future".
    latest = (clock.now() + timedelta(hours=14)).date()
    if value > latest:
        raise ValidationFailed.field(field, "must not be in the future", code="future_date")
    if value < OLDEST_BIRTH_DATE:
        raise ValidationFailed.field(field, f"must not be before {OLDEST_BIRTH_DATE.isoformat()}")


def _check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    if not clock.is_time_zone(value):
        raise ValidationFailed.field("timezone", "unknown IANA time zone", code="invalid_timezone")
    return value


def _normalise_language(value: str) -> str:
    """A BCP 47 tag in its usual case: `es`, `en-GB`, `zh-Hant-TW`."""
    if not _LANGUAGE.match(value or ""):
        raise ValidationFailed.field("preferred_language", "must be a BCP 47 tag such as en or es-MX",
                                     code="invalid_language")
    parts = value.split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 and part.isalpha():
            out.append(part.upper())
        elif len(part) == 4 and part.isalpha():
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def _clean_tags(tags: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for tag in tags:
        clean = names.tidy(tag).lower()
        if clean:
            seen.setdefault(clean[:64], None)
    return list(seen)


def _phone_rows(items: Sequence[PhoneIn], region: str) -> list[tuple[str, str, bool]]:
    """(E.164, kind, is_primary) without repeats; exactly one primary when there is any."""
    rows: dict[str, tuple[str, bool]] = {}
    for i, item in enumerate(items):
        number = normalise_phone(item.number, field=f"phones.{i}.number", region=region)
        kind, primary = rows.get(number, (item.kind, False))
        rows[number] = (kind, primary or item.is_primary)
    if sum(primary for _, primary in rows.values()) > 1:
        raise ValidationFailed.field("phones", "only one phone number can be primary")
    out = [(number, kind, primary) for number, (kind, primary) in rows.items()]
    if out and not any(p for _, _, p in out):
        out[0] = (out[0][0], out[0][1], True)
    return out


def _email_rows(items: Sequence[EmailIn]) -> list[tuple[str, str, bool]]:
    rows: dict[str, tuple[str, str, bool]] = {}
    for i, item in enumerate(items):
        email = normalise_email(item.email, field=f"emails.{i}.email")
        _, kind, primary = rows.get(email.lower(), (email, item.kind, False))
        rows[email.lower()] = (email, kind, primary or item.is_primary)
    if sum(primary for *_, primary in rows.values()) > 1:
        raise ValidationFailed.field("emails", "only one email address can be primary")
    out = list(rows.values())
    if out and not any(p for *_, p in out):
        out[0] = (out[0][0], out[0][1], True)
    return out


def _identifier_rows(items: Sequence[IdentifierIn]) -> list[tuple[str, str, str | None]]:
    rows: dict[tuple[str, str], str | None] = {}
    for item in items:
        rows[(item.system.strip(), item.value.strip())] = item.label
    return [(system, value, label) for (system, value), label in rows.items()]


async def _check_identifiers_free(session: AsyncSession, org_id: uuid.UUID,
                                  rows: Sequence[tuple[str, str, str | None]],
                                  patient_id: uuid.UUID | None = None) -> None:
    for i, (system, value, _) in enumerate(rows):
        owner = await session.scalar(
            select(PatientIdentifier.patient_id).where(
                PatientIdentifier.org_id == org_id, PatientIdentifier.system == system,
                PatientIdentifier.value == value)
        )
        if owner is not None and owner != patient_id:
            raise Conflict(f"identifiers.{i}: {system} {value!r} already belongs to another patient",
                           code="identifier_taken",
                           errors=[{"field": f"identifiers.{i}.value", "message": "already in use",
                                    "type": "identifier_taken"}],
                           patient_id=str(owner))


def _sync_primaries(patient: Patient) -> None:
    """Keep the denormalised primary_phone / primary_email in step with the child rows."""
    patient.primary_phone = next((p.number for p in patient.phones if p.is_primary), None)
    patient.primary_email = next((e.email for e in patient.emails if e.is_primary), None)


async def _flush(session: AsyncSession) -> None:
    """Flush inside a savepoint, turning a unique violation that raced past our checks into a 409."""
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None) or "unique"
        raise Conflict(f"Conflicts with an existing record ({constraint})", code="conflict") from None
