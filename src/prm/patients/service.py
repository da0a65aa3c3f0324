"""The patient record's rules: create, read, update, delete, search, duplicates, merge, consent,
timeline and the FHIR view.

Functions other modules call (stable names and signatures):

* `get(session, org_id, patient_id)`: the patient (also when merged); NotFound for an unknown id,
  another organisation's patient or a soft-deleted one.
* `resolve(session, org_id, patient_id)`: like `get`, but follows `merged_into_id` to the survivor.
* `find_by_phone(session, org_id, phone)`: the live patient with that number (any input format).
* `create_provisional(session, org_id, phone=..., source=...)`: a patient known only by a phone
  number (get-or-create: an existing live patient with that number is returned instead).
* `consent_allows(...)`, `set_consent(...)`, `data_sharing_allows(...)`: consent (see `consent.py`).
* `to_fhir(patient)`: a validated FHIR R4B `Patient`.

Functions whose name the API uses take the acting `who: Principal` and write the audit log.
Everything flushes and never commits: the caller's transaction decides.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import structlog
from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Select, and_, case, delete, func, or_, select
from sqlalchemy import update as sa_update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.sql.elements import ColumnElement

from prm.core import audit, clock, events
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, NotFound, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams
from prm.patients import consent as consent_rules
from prm.patients import duplicates, names, phones
from prm.patients import timeline as _own_timeline  # noqa: F401  (registers the "patients" source)
from prm.patients.consent import ConsentDecision
from prm.patients.fhir_mapping import to_fhir
from prm.patients.models import (
    CHANNELS,
    CONTACT_PURPOSES,
    DATA_SHARING_PURPOSES,
    Consent,
    Patient,
    PatientEmail,
    PatientIdentifier,
    PatientNameTerm,
    PatientNameWord,
    PatientPhone,
)
from prm.patients.registry import TimelineEntry, merge_handlers, timeline_sources
from prm.patients.schemas import (
    EmailIn,
    IdentifierIn,
    PatientCreate,
    PatientUpdate,
    PhoneIn,
)
from prm.settings import Settings, get_settings

__all__ = [
    "ConsentDecision",
    "consent_allows",
    "create_provisional",
    "data_sharing_allows",
    "find_by_phone",
    "get",
    "resolve",
    "set_consent",
    "to_fhir",
]

log = structlog.get_logger(__name__)

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


def _settings() -> Settings:
    return get_settings()


def _not_found(patient_id: object) -> NotFound:
    return NotFound(f"Patient {patient_id} not found", code="patient_not_found")


def _merged_conflict(patient: Patient) -> Conflict:
    return Conflict(f"Patient {patient.id} was merged into {patient.merged_into_id}; change the survivor",
                    code="patient_merged", merged_into_id=str(patient.merged_into_id))


# --- validation ------------------------------------------------------------------------------------


def normalise_phone(raw: str, *, field: str = "phone", region: str | None = None) -> str:
    """`raw` in E.164, or a 422 naming `field` (default region: setting DEFAULT_PHONE_REGION)."""
    try:
        return phones.normalise(raw, region or _settings().default_phone_region)
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


def _phone_rows(items: Sequence[PhoneIn]) -> list[tuple[str, str, bool]]:
    """(E.164, kind, is_primary) without repeats; exactly one primary when there is any."""
    rows: dict[str, tuple[str, bool]] = {}
    for i, item in enumerate(items):
        number = normalise_phone(item.number, field=f"phones.{i}.number")
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


# --- reads -------------------------------------------------------------------------------------------


def _live(org_id: uuid.UUID) -> Select[Any]:
    return select(Patient).where(Patient.org_id == org_id, Patient.deleted_at.is_(None))


def _with_contacts(stmt: Select[Any]) -> Select[Any]:
    return stmt.options(selectinload(Patient.phones), selectinload(Patient.emails),
                        selectinload(Patient.identifiers))


async def get(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
              with_contacts: bool = False, for_update: bool = False) -> Patient:
    """The patient (merged ones included); NotFound when unknown, another org's, or deleted."""
    stmt = _live(org_id).where(Patient.id == patient_id)
    if with_contacts:
        stmt = _with_contacts(stmt)
    if for_update:
        stmt = stmt.with_for_update()
    patient = (await session.execute(stmt)).scalar_one_or_none()
    if patient is None:
        raise _not_found(patient_id)
    return patient


async def resolve(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                  with_contacts: bool = False) -> Patient:
    """The patient, or the survivor it was (transitively) merged into."""
    patient = await get(session, org_id, patient_id, with_contacts=with_contacts)
    for _ in range(MAX_MERGE_CHAIN):
        if patient.merged_into_id is None:
            return patient
        patient = await get(session, org_id, patient.merged_into_id, with_contacts=with_contacts)
    raise Conflict(f"Merge chain of patient {patient_id} is too long", code="merge_chain_too_long")


async def find_by_phone(session: AsyncSession, org_id: uuid.UUID, phone: str) -> Patient | None:
    """The live patient with this number in any format (merged and deleted ones are ignored).

    When several share it (a family phone), confirmed patients come before provisional ones,
    active before inactive/deceased, primary numbers before secondary, older before newer.
    """
    number = phones.try_normalise(phone, _settings().default_phone_region)
    if number is None:
        return None
    stmt = (
        _live(org_id)
        .join(PatientPhone, and_(PatientPhone.patient_id == Patient.id, PatientPhone.org_id == org_id))
        .where(PatientPhone.number == number, Patient.status != "merged")
        .order_by(Patient.is_provisional, (Patient.status != "active"), PatientPhone.is_primary.desc(),
                  Patient.created_at, Patient.id)
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def create_provisional(session: AsyncSession, org_id: uuid.UUID, *, phone: str, source: str) -> Patient:
    """A patient known only by a phone number (an inbound message or call from an unknown number).

    Get-or-create: concurrent callers for the same number are serialised by a transaction-scoped
    advisory lock, and a live patient that already has the number is returned instead. A `source`
    that is a channel (`whatsapp`, `sms`, `voice`, `email`) becomes the preferred channel.
    """
    number = normalise_phone(phone)
    lock_key = func.hashtext(f"patient-phone:{org_id}:{number}")
    await session.execute(select(func.pg_advisory_xact_lock(lock_key)))
    existing = await find_by_phone(session, org_id, number)
    if existing is not None:
        return existing
    patient = Patient(org_id=org_id, is_provisional=True, source=source[:32], primary_phone=number,
                      given_name="", family_name="", gender="unknown", preferred_language="en", tags=[],
                      status="active", preferred_channel=source if source in CHANNELS else None)
    patient.phones = [PatientPhone(org_id=org_id, number=number, kind="mobile", is_primary=True)]
    patient.emails = []
    patient.identifiers = []
    session.add(patient)
    await _flush(session)
    await audit.record(session, Principal.system(org_id), "create", "patient", patient.id,
                       patient_id=patient.id, details={"provisional": True, "source": source})
    await events.publish(session, Event(type="patient.created", org_id=org_id,
                                        payload={"patient_id": str(patient.id), "provisional": True,
                                                 "source": source}))
    return patient


async def read(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *, follow_merged: bool = True
               ) -> Patient:
    """The API read: audited; a merged patient raises PatientMoved unless `follow_merged` is False."""
    patient = await get(session, who.org_id, patient_id, with_contacts=True)
    await audit.record(session, who, "read", "patient", patient.id, patient_id=patient.id)
    if follow_merged and patient.merged_into_id is not None:
        survivor = await resolve(session, who.org_id, patient.id)
        raise PatientMoved(patient.id, survivor.id)
    return patient


async def _require_readable(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> Patient:
    """For sub-resource reads (timeline, consent, duplicates): NotFound / PatientMoved / the patient."""
    patient = await get(session, who.org_id, patient_id)
    if patient.merged_into_id is not None:
        survivor = await resolve(session, who.org_id, patient.id)
        raise PatientMoved(patient.id, survivor.id)
    return patient


# --- create / update / delete ------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    patient: Patient
    match: duplicates.Match


async def create(session: AsyncSession, who: Principal, data: PatientCreate, *, source: str = "api",
                 threshold: float | None = None) -> tuple[Patient, list[Candidate]]:
    """Create a patient; return it with the existing patients that look like duplicates of it."""
    org_id = who.org_id
    _check_birth_date(data.birth_date)
    _check_birth_date(data.deceased_date, "deceased_date")
    phone_rows = _phone_rows(data.phones)
    email_rows = _email_rows(data.emails)
    identifier_rows = _identifier_rows(data.identifiers)
    await _check_identifiers_free(session, org_id, identifier_rows)

    patient = Patient(
        org_id=org_id,
        given_name=names.tidy(data.given_name),
        family_name=names.tidy(data.family_name),
        birth_date=data.birth_date,
        gender=data.gender,
        preferred_language=_normalise_language(data.preferred_language),
        preferred_channel=data.preferred_channel,
        timezone=_check_timezone(data.timezone),
        address=data.address.model_dump(exclude_none=True) if data.address else None,
        tags=_clean_tags(data.tags),
        status=data.status,
        deceased_date=data.deceased_date,
        is_provisional=False,
        source=source,
    )
    patient.phones = [PatientPhone(org_id=org_id, number=n, kind=k, is_primary=p) for n, k, p in phone_rows]
    patient.emails = [PatientEmail(org_id=org_id, email=e, kind=k, is_primary=p) for e, k, p in email_rows]
    patient.identifiers = [PatientIdentifier(org_id=org_id, system=s, value=v, label=lb)
                           for s, v, lb in identifier_rows]
    _sync_primaries(patient)

    candidates = await find_duplicates(session, org_id, _facts(patient), threshold=threshold)
    session.add(patient)
    await _flush(session)
    await audit.record(session, who, "create", "patient", patient.id, patient_id=patient.id,
                       details={"possible_duplicates": [str(c.patient.id) for c in candidates]})
    await events.publish(session, Event(type="patient.created", org_id=org_id,
                                        payload={"patient_id": str(patient.id), "provisional": False,
                                                 "source": source}))
    return patient, candidates


async def update(session: AsyncSession, who: Principal, patient_id: uuid.UUID,
                 data: PatientUpdate) -> Patient:
    """Partial update: only the fields present in `data` change (lists are replaced whole)."""
    org_id = who.org_id
    patient = await get(session, org_id, patient_id, with_contacts=True, for_update=True)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    sent = data.model_fields_set
    for name in ("given_name", "family_name", "gender", "status"):
        if name in sent and getattr(data, name) is None:
            raise ValidationFailed.field(name, "must not be null")
    changed: list[str] = []

    def put(name: str, value: Any) -> None:
        if getattr(patient, name) != value:
            setattr(patient, name, value)
            changed.append(name)

    if "given_name" in sent:
        put("given_name", names.tidy(data.given_name))
    if "family_name" in sent:
        put("family_name", names.tidy(data.family_name))
    if "birth_date" in sent:
        _check_birth_date(data.birth_date)
        put("birth_date", data.birth_date)
    if "deceased_date" in sent:
        _check_birth_date(data.deceased_date, "deceased_date")
        put("deceased_date", data.deceased_date)
    if "gender" in sent:
        put("gender", data.gender)
    if "status" in sent:
        put("status", data.status)
    if "preferred_language" in sent:
        put("preferred_language", _normalise_language(data.preferred_language or "en"))
    if "preferred_channel" in sent:
        put("preferred_channel", data.preferred_channel)
    if "timezone" in sent:
        put("timezone", _check_timezone(data.timezone))
    if "address" in sent:
        put("address", data.address.model_dump(exclude_none=True) if data.address else None)
    if "tags" in sent:
        put("tags", _clean_tags(data.tags or []))
    if "phones" in sent:
        rows = _phone_rows(data.phones or [])
        if [(p.number, p.kind, p.is_primary) for p in patient.phones] != rows:
            existing = {p.number: p for p in patient.phones}
            kept = []
            for number, kind, primary in rows:
                row = existing.get(number) or PatientPhone(org_id=org_id, number=number)
                row.kind, row.is_primary = kind, False
                kept.append((row, primary))
            await _replace_children(session, patient, "phones", kept)
            changed.append("phones")
    if "emails" in sent:
        rows_e = _email_rows(data.emails or [])
        if [(e.email, e.kind, e.is_primary) for e in patient.emails] != rows_e:
            existing_e = {e.email.lower(): e for e in patient.emails}
            kept_e = []
            for email, kind, primary in rows_e:
                row_e = existing_e.get(email.lower()) or PatientEmail(org_id=org_id, email=email)
                row_e.email, row_e.kind, row_e.is_primary = email, kind, False
                kept_e.append((row_e, primary))
            await _replace_children(session, patient, "emails", kept_e)
            changed.append("emails")
    if "identifiers" in sent:
        rows_i = _identifier_rows(data.identifiers or [])
        if {(i.system, i.value, i.label) for i in patient.identifiers} != set(rows_i):
            await _check_identifiers_free(session, org_id, rows_i, patient.id)
            existing_i = {(i.system, i.value): i for i in patient.identifiers}
            new_ids = []
            for system, value, label in rows_i:
                row_i = existing_i.get((system, value)) or PatientIdentifier(org_id=org_id, system=system,
                                                                              value=value)
                row_i.label = label
                new_ids.append(row_i)
            patient.identifiers = new_ids
            changed.append("identifiers")
    if "is_provisional" in sent and data.is_provisional is not None:
        put("is_provisional", data.is_provisional)
    elif patient.is_provisional and ({"given_name", "family_name"} & set(changed)):
        put("is_provisional", False)  # a provisional record that now has a name is a real patient

    _sync_primaries(patient)
    if changed:
        patient.updated_at = clock.now()
        await _flush(session)
        await events.publish(session, Event(type="patient.updated", org_id=org_id,
                                            payload={"patient_id": str(patient.id), "fields": changed}))
    await audit.record(session, who, "update", "patient", patient.id, patient_id=patient.id,
                       details={"fields": changed})
    return patient


async def _replace_children(session: AsyncSession, patient: Patient, attr: str,
                            rows: list[tuple[Any, bool]]) -> None:
    """Replace a phones/emails collection, clearing the old primary first (partial unique index)."""
    setattr(patient, attr, [row for row, _ in rows])
    await _flush(session)
    for row, primary in rows:
        row.is_primary = primary


async def delete_patient(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> None:
    """Soft delete: the row stays (other modules' references stay valid) but reads say 404; its
    identifiers are released."""
    patient = await get(session, who.org_id, patient_id, for_update=True)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    patient.deleted_at = clock.now()
    # Identifiers are unique per organisation and system: release them so they can be registered again.
    released = await session.execute(delete(PatientIdentifier).where(
        PatientIdentifier.org_id == who.org_id, PatientIdentifier.patient_id == patient.id))
    await session.flush()
    await audit.record(session, who, "delete", "patient", patient.id, patient_id=patient.id,
                       details={"identifiers_released": int(getattr(released, "rowcount", 0) or 0)})
    await events.publish(session, Event(type="patient.deleted", org_id=who.org_id,
                                        payload={"patient_id": str(patient.id)}))


# --- search ------------------------------------------------------------------------------------------


@dataclass
class Filters:
    """Search filters; all given ones must hold. `q` is a fuzzy, accent-insensitive name search."""

    q: str | None = None
    phone: str | None = None
    email: str | None = None
    birth_date: date | None = None
    identifier: str | None = None  # "value" (any system) or "system|value"
    status: str | None = None
    tag: str | None = None
    is_provisional: bool | None = None
    include_merged: bool = False

    def used(self) -> list[str]:
        return [k for k, v in self.__dict__.items() if v not in (None, False, "")]


async def _set_similarity(session: AsyncSession, threshold: float) -> None:
    """The fuzzy-match thresholds of `%` (terms) and `%>>` (whole names) for this transaction."""
    await session.execute(select(func.set_config("pg_trgm.similarity_threshold", str(threshold), True),
                                 func.set_config("pg_trgm.strict_word_similarity_threshold", str(threshold),
                                                 True)))


def _query_words(query: str) -> list[str]:
    """The words that must match: those of 3+ letters, or all when there are none."""
    words = list(dict.fromkeys(query.split()))
    return [w for w in words if len(w) >= 3] or words


def _name_matches(org_id: uuid.UUID, words: list[str]) -> Any:
    """Live patients whose name has, for every query word, a word equal to it (score 1), starting
    with it (0.9) or similar to it (trigram similarity); the score is the sum over query words.

    Query words are matched against the organisation's dictionary of name words (small, trigram
    indexed), then patients are found by exact word through the btree of `patient_name_words`.
    """
    parts = []
    for i, word in enumerate(words):
        starts = PatientNameTerm.word.startswith(word, autoescape=True)
        matches = [PatientNameTerm.word == word, starts]
        if len(word) >= 3:
            matches.append(PatientNameTerm.word.op("%")(word))
        score = case((PatientNameTerm.word == word, 1.0), (starts, 0.9),
                     else_=func.similarity(word, PatientNameTerm.word))
        terms = (select(PatientNameTerm.word.label("word"), score.label("score"))
                 .where(PatientNameTerm.org_id == org_id, or_(*matches)).cte(f"name_terms_{i}"))
        parts.append(
            select(PatientNameWord.patient_id, func.max(terms.c.score).label("score"),
                   func.min(PatientNameWord.sort_key).label("sort_key"))
            .join(terms, PatientNameWord.word == terms.c.word)
            .where(PatientNameWord.org_id == org_id)
            .group_by(PatientNameWord.patient_id)
            .cte(f"name_matches_{i}"))
    first = parts[0]
    joined: Any = first
    total_score: ColumnElement[Any] = first.c.score
    for part in parts[1:]:
        joined = joined.join(part, part.c.patient_id == first.c.patient_id)
        total_score = total_score + part.c.score
    return (select(first.c.patient_id, total_score.label("score"), first.c.sort_key)
            .select_from(joined).cte("name_matches"))


def _trigram_name_filter(stmt: Select[Any], words: list[str]) -> Select[Any]:
    """Name search straight on `patients.search_name` (trigram GIN index): used when merged patients
    are included, since the word index only holds live patients."""
    for word in words:
        similar: ColumnElement[bool] = Patient.search_name.op("%>>")(word)
        starts = Patient.search_name.regexp_match(r"\m" + re.escape(word))
        stmt = stmt.where(or_(similar, starts) if len(word) >= 3 else similar)
    return stmt


async def search(session: AsyncSession, who: Principal, filters: Filters, paging: PageParams
                 ) -> tuple[list[Patient], int]:
    """Filtered, paginated list. With `q`, best name matches first; otherwise by family, given name."""
    org_id = who.org_id
    stmt = _live(org_id)
    if not filters.include_merged:
        stmt = stmt.where(Patient.status != "merged")
    narrowed = False
    if filters.status:
        stmt, narrowed = stmt.where(Patient.status == filters.status), True
    if filters.tag:
        stmt, narrowed = stmt.where(Patient.tags.contains([filters.tag.strip().lower()])), True
    if filters.is_provisional is not None:
        stmt, narrowed = stmt.where(Patient.is_provisional.is_(filters.is_provisional)), True
    if filters.birth_date is not None:
        stmt, narrowed = stmt.where(Patient.birth_date == filters.birth_date), True
    if filters.phone:
        number = normalise_phone(filters.phone, field="phone")
        stmt, narrowed = stmt.where(Patient.id.in_(select(PatientPhone.patient_id).where(
            PatientPhone.org_id == org_id, PatientPhone.number == number))), True
    if filters.email:
        email = filters.email.strip().lower()
        stmt, narrowed = stmt.where(Patient.id.in_(select(PatientEmail.patient_id).where(
            PatientEmail.org_id == org_id, func.lower(PatientEmail.email) == email))), True
    if filters.identifier:
        system, sep, value = filters.identifier.rpartition("|")
        cond = [PatientIdentifier.org_id == org_id, PatientIdentifier.value == value.strip()]
        if sep and system:
            cond.append(PatientIdentifier.system == system.strip())
        stmt, narrowed = stmt.where(Patient.id.in_(select(PatientIdentifier.patient_id).where(*cond))), True
    query = names.fold(filters.q)
    if filters.q is not None and not query:
        raise ValidationFailed.field("q", "must contain letters or digits")

    if query and not filters.include_merged:
        await _set_similarity(session, _settings().patient_search_similarity)
        matches = _name_matches(org_id, _query_words(query))
        if not narrowed:
            rows, total = await _page_of_name_matches(session, org_id, matches, paging)
            await _audit_search(session, who, filters, rows)
            return rows, total
        stmt = stmt.join(matches, matches.c.patient_id == Patient.id)
        ordered = stmt.order_by(matches.c.score.desc(), func.length(Patient.search_name), Patient.family_name,
                                Patient.given_name, Patient.id)
    elif query:
        await _set_similarity(session, _settings().patient_search_similarity)
        stmt = _trigram_name_filter(stmt, _query_words(query))
        ordered = stmt.order_by(func.length(Patient.search_name), Patient.family_name, Patient.given_name,
                                Patient.id)
    else:
        ordered = stmt.order_by(Patient.family_name, Patient.given_name, Patient.id)
    # One pass: the page and the total (a window count) together; a page past the end counts apart.
    result = (await session.execute(
        _with_contacts(ordered.add_columns(func.count().over().label("total")))
        .limit(paging.limit).offset(paging.offset))).all()
    rows = [row[0] for row in result]
    if result:
        total = int(result[0][1])
    else:
        total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    await _audit_search(session, who, filters, rows)
    return rows, total


async def _page_of_name_matches(session: AsyncSession, org_id: uuid.UUID, matches: Any, paging: PageParams
                                ) -> tuple[list[Patient], int]:
    """Rank, count and page from the word index alone; load only the page's patients."""
    ranked = (await session.execute(
        select(matches.c.patient_id, func.count().over())
        .order_by(matches.c.score.desc(), func.length(matches.c.sort_key), matches.c.sort_key,
                  matches.c.patient_id)
        .limit(paging.limit).offset(paging.offset))).all()
    if not ranked:
        total = await session.scalar(select(func.count()).select_from(matches))
        return [], int(total or 0)
    ids = [row[0] for row in ranked]
    loaded = {p.id: p for p in (await session.execute(
        _with_contacts(_live(org_id).where(Patient.id.in_(ids))))).scalars()}
    return [loaded[i] for i in ids if i in loaded], int(ranked[0][1])


async def _audit_search(session: AsyncSession, who: Principal, filters: Filters, rows: list[Patient]) -> None:
    await audit.record(session, who, "search", "patient", None,
                       details={"filters": filters.used(), "patient_ids": [str(p.id) for p in rows]})


# --- duplicates --------------------------------------------------------------------------------------


def _facts(patient: Patient) -> duplicates.Facts:
    return duplicates.Facts.of(patient.given_name, patient.family_name, patient.birth_date,
                               [p.number for p in patient.phones], [e.email for e in patient.emails])


async def find_duplicates(session: AsyncSession, org_id: uuid.UUID, facts: duplicates.Facts, *,
                          exclude: Iterable[uuid.UUID] = (), threshold: float | None = None,
                          limit: int = 10) -> list[Candidate]:
    """Live patients scoring at least `threshold` against `facts`, best first.

    Candidates come from four indexed lookups (same phone, same email, same or transposed birth
    date, similar name by trigram), then each is scored in Python by `duplicates.score`.
    """
    threshold = _settings().patient_duplicate_threshold if threshold is None else threshold
    excluded = set(exclude)
    ids: set[uuid.UUID] = set()
    if facts.phones:
        ids.update((await session.execute(
            select(PatientPhone.patient_id).where(PatientPhone.org_id == org_id,
                                                  PatientPhone.number.in_(sorted(facts.phones))).limit(200)
        )).scalars())
    if facts.emails:
        ids.update((await session.execute(
            select(PatientEmail.patient_id).where(PatientEmail.org_id == org_id,
                                                  func.lower(PatientEmail.email).in_(sorted(facts.emails)))
            .limit(200)
        )).scalars())
    if facts.birth_date is not None:
        days = [facts.birth_date, *duplicates.transpositions(facts.birth_date)]
        ids.update((await session.execute(
            select(Patient.id).where(Patient.org_id == org_id, Patient.birth_date.in_(days),
                                     Patient.deleted_at.is_(None), Patient.status != "merged").limit(500)
        )).scalars())
    full = names.full_name(facts.given_name, facts.family_name)
    # A name alone scores at most NAME_WEIGHT: above that, every candidate that can reach the
    # threshold shares a phone, an email or a (transposed) birth date, all found above.
    if full and threshold <= duplicates.NAME_WEIGHT:
        # Only names similar enough to reach the threshold together with the other signals matter.
        await session.execute(select(func.set_config("pg_trgm.similarity_threshold", "0.45", True)))
        ids.update((await session.execute(
            select(Patient.id).where(Patient.org_id == org_id, Patient.search_name.op("%")(full),
                                     Patient.deleted_at.is_(None), Patient.status != "merged")
            .order_by(Patient.search_name.op("<->")(full)).limit(50)
        )).scalars())
    ids -= excluded
    if not ids:
        return []
    rows = (await session.execute(
        _with_contacts(_live(org_id).where(Patient.id.in_(ids), Patient.status != "merged"))
    )).scalars().all()
    found = []
    for row in rows:
        match = duplicates.score(facts, _facts(row))
        if match.is_likely(threshold):
            found.append(Candidate(row, match))
    found.sort(key=lambda c: (-c.match.score, str(c.patient.id)))
    return found[:limit]


async def duplicates_of(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *,
                        threshold: float | None = None) -> list[Candidate]:
    """The API view: likely duplicates of an existing patient (audited)."""
    await _require_readable(session, who, patient_id)
    patient = await get(session, who.org_id, patient_id, with_contacts=True)
    found = await find_duplicates(session, who.org_id, _facts(patient), exclude=[patient.id],
                                  threshold=threshold)
    await audit.record(session, who, "read", "patient_duplicates", patient.id, patient_id=patient.id,
                       details={"candidates": [str(c.patient.id) for c in found]})
    return found


# --- merge -------------------------------------------------------------------------------------------


@dataclass
class MergeOutcome:
    survivor: Patient
    duplicate_id: uuid.UUID
    moved: dict[str, int] = field(default_factory=dict)


async def merge(session: AsyncSession, who: Principal, survivor_id: uuid.UUID, duplicate_id: uuid.UUID
                ) -> MergeOutcome:
    """Fold `duplicate_id` into `survivor_id` in the caller's transaction.

    Contact points and identifiers move over (without repeats), blanks of the survivor are filled
    from the duplicate, consent history moves (an opt-out wins where the two disagree), every
    module's rows move through `registry.on_merge` handlers, and the duplicate becomes `merged`
    with `merged_into_id` set (patients merged into it earlier now point at the survivor).
    """
    org_id = who.org_id
    if survivor_id == duplicate_id:
        raise Conflict("A patient cannot be merged into itself", code="merge_into_self")
    # Lock both rows in a fixed order so two crossing merges cannot deadlock.
    locked = {}
    for pid in sorted([survivor_id, duplicate_id], key=str):
        locked[pid] = await get(session, org_id, pid, with_contacts=True, for_update=True)
    survivor, duplicate = locked[survivor_id], locked[duplicate_id]
    if survivor.merged_into_id is not None:
        raise Conflict(f"Patient {survivor.id} is itself merged into {survivor.merged_into_id}",
                       code="survivor_merged", merged_into_id=str(survivor.merged_into_id))
    if duplicate.merged_into_id is not None:
        raise Conflict(f"Patient {duplicate.id} is already merged into {duplicate.merged_into_id}",
                       code="already_merged", merged_into_id=str(duplicate.merged_into_id))

    moved: dict[str, int] = {}
    moved["patients.phones"] = await _move_phones(session, survivor, duplicate)
    moved["patients.emails"] = await _move_emails(session, survivor, duplicate)
    moved["patients.identifiers"] = len(duplicate.identifiers)
    await session.execute(sa_update(PatientIdentifier).where(PatientIdentifier.org_id == org_id,
                                                          PatientIdentifier.patient_id == duplicate.id)
                          .values(patient_id=survivor.id))
    moved["patients.consents"] = await _move_consents(session, who, survivor.id, duplicate.id)
    _fill_blanks(survivor, duplicate)

    for module, handler in sorted(merge_handlers().items()):
        moved[module] = int(await handler(session, org_id, duplicate.id, survivor.id) or 0)

    now = clock.now()
    await session.execute(sa_update(Patient)
                          .where(Patient.org_id == org_id, Patient.merged_into_id == duplicate.id)
                          .values(merged_into_id=survivor.id))
    duplicate.status = "merged"
    duplicate.merged_into_id = survivor.id
    duplicate.merged_at = now
    duplicate.updated_at = now
    survivor.updated_at = now
    await session.flush()
    session.expire(duplicate, ["phones", "emails", "identifiers"])
    # Rows moved with UPDATE statements: reload the survivor and its children from the database.
    survivor = (await session.execute(
        _with_contacts(_live(org_id).where(Patient.id == survivor.id))
        .execution_options(populate_existing=True))).scalar_one()
    _sync_primaries(survivor)
    await session.flush()
    details = {"survivor_id": str(survivor.id), "duplicate_id": str(duplicate.id), "moved": moved}
    for pid in (survivor.id, duplicate.id):
        await audit.record(session, who, "merge", "patient", pid, patient_id=pid, details=details)
    await events.publish(session, Event(type="patient.merged", org_id=org_id, payload=details))
    return MergeOutcome(survivor=survivor, duplicate_id=duplicate.id, moved=moved)


async def _move_phones(session: AsyncSession, survivor: Patient, duplicate: Patient) -> int:
    have = {p.number for p in survivor.phones}
    has_primary = any(p.is_primary for p in survivor.phones)
    count = 0
    for phone in list(duplicate.phones):
        if phone.number in have:
            continue
        await session.execute(sa_update(PatientPhone).where(PatientPhone.id == phone.id).values(
            patient_id=survivor.id, is_primary=phone.is_primary and not has_primary))
        count += 1
    await session.execute(delete(PatientPhone).where(PatientPhone.patient_id == duplicate.id))
    return count


async def _move_emails(session: AsyncSession, survivor: Patient, duplicate: Patient) -> int:
    have = {e.email.lower() for e in survivor.emails}
    has_primary = any(e.is_primary for e in survivor.emails)
    count = 0
    for email in list(duplicate.emails):
        if email.email.lower() in have:
            continue
        await session.execute(sa_update(PatientEmail).where(PatientEmail.id == email.id).values(
            patient_id=survivor.id, is_primary=email.is_primary and not has_primary))
        count += 1
    await session.execute(delete(PatientEmail).where(PatientEmail.patient_id == duplicate.id))
    return count


async def _move_consents(session: AsyncSession, who: Principal, survivor_id: uuid.UUID,
                         duplicate_id: uuid.UUID) -> int:
    before_survivor = await _current_consents(session, who.org_id, survivor_id)
    before_duplicate = await _current_consents(session, who.org_id, duplicate_id)
    result = await session.execute(sa_update(Consent).where(Consent.org_id == who.org_id,
                                                         Consent.patient_id == duplicate_id)
                                   .values(patient_id=survivor_id))
    for key in set(before_survivor) & set(before_duplicate):
        if consent_rules.merged_state(before_survivor[key].granted, before_duplicate[key].granted) is False:
            channel, purpose = key
            session.add(Consent(org_id=who.org_id, patient_id=survivor_id, channel=channel, purpose=purpose,
                                granted=False, source="merge", recorded_at=clock.now(),
                                recorded_by_kind=who.kind, recorded_by_id=who.subject_id,
                                note=f"records disagreed when merging {duplicate_id}; the opt-out wins"))
    return int(getattr(result, "rowcount", 0) or 0)


def _fill_blanks(survivor: Patient, duplicate: Patient) -> None:
    if not survivor.given_name and not survivor.family_name:
        survivor.given_name, survivor.family_name = duplicate.given_name, duplicate.family_name
    for attr in ("birth_date", "address", "timezone", "preferred_channel", "deceased_date"):
        if getattr(survivor, attr) is None and getattr(duplicate, attr) is not None:
            setattr(survivor, attr, getattr(duplicate, attr))
    if survivor.gender == "unknown" and duplicate.gender != "unknown":
        survivor.gender = duplicate.gender
    survivor.tags = _clean_tags([*(survivor.tags or []), *(duplicate.tags or [])])
    if survivor.is_provisional and not duplicate.is_provisional:
        survivor.is_provisional = False


# --- consent -----------------------------------------------------------------------------------------


async def _current_consents(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID
                            ) -> dict[tuple[str | None, str], Consent]:
    """The newest record per (channel, purpose)."""
    rows = (await session.execute(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient_id)
        .ext(distinct_on(Consent.channel, Consent.purpose))
        .order_by(Consent.channel, Consent.purpose, Consent.recorded_at.desc(), Consent.id.desc())
    )).scalars().all()
    return {(row.channel, row.purpose): row for row in rows}


def _data_sharing_defaults() -> dict[str, bool]:
    s = _settings()
    return {"ai_processing": s.consent_default_ai_processing, "ehr_export": s.consent_default_ehr_export}


def _decide(patient: Patient, channel: str | None, purpose: str, record: Consent | None) -> ConsentDecision:
    return consent_rules.decide(
        channel=channel, purpose=purpose,
        granted=record.granted if record else None,
        recorded_at=record.recorded_at if record else None,
        source=record.source if record else None,
        patient_status=patient.status, deleted=patient.deleted_at is not None,
        data_sharing_defaults=_data_sharing_defaults(),
    )


def _check_consent_key(channel: str | None, purpose: str, prefix: str = "") -> None:
    try:
        consent_rules.check_key(channel, purpose)
    except ValueError as exc:
        name = "channel" if channel is not None and channel not in CHANNELS else "purpose"
        raise ValidationFailed.field(prefix + name, str(exc))


async def _consent_subject(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> Patient:
    """The patient whose consent applies: the survivor of a merge; a deleted one too (it denies all)."""
    patient = await session.scalar(select(Patient).where(Patient.org_id == org_id, Patient.id == patient_id))
    if patient is None:
        raise _not_found(patient_id)
    if patient.deleted_at is None and patient.merged_into_id is not None:
        return await resolve(session, org_id, patient.id)
    return patient


async def consent_allows(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                         channel: str, purpose: str) -> ConsentDecision:
    """May we contact this patient on `channel` for `purpose`? (rules and defaults: `consent.py`).

    With no record, care and reminders are allowed and marketing is denied until opted in.
    A merged patient is answered for its survivor; a deceased one is never contacted.
    """
    _check_consent_key(channel, purpose)
    patient = await _consent_subject(session, org_id, patient_id)
    record = await session.scalar(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient.id,
                              Consent.channel == channel, Consent.purpose == purpose)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))
    return _decide(patient, channel, purpose, record)


async def data_sharing_allows(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *,
                              purpose: str) -> ConsentDecision:
    """May this patient's data be used for `purpose` (`ai_processing` or `ehr_export`)?"""
    _check_consent_key(None, purpose)
    patient = await _consent_subject(session, org_id, patient_id)
    record = await session.scalar(
        select(Consent).where(Consent.org_id == org_id, Consent.patient_id == patient.id,
                              Consent.channel.is_(None), Consent.purpose == purpose)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1))
    return _decide(patient, None, purpose, record)


async def set_consent(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID, *, channel: str | None,
                      purpose: str | None, granted: bool, source: str, who: Principal | None = None,
                      note: str | None = None) -> list[Consent]:
    """Record a consent decision; `purpose=None` means every contact purpose of `channel` (STOP/START).

    `channel=None` records data-sharing consent (`purpose` is then `ai_processing` or `ehr_export`).
    A decision equal to the newest record is not repeated. Returns the rows written.
    """
    who = who or Principal.system(org_id)
    if channel is None and purpose is None:
        raise ValidationFailed.field("purpose", "is required for data-sharing consent")
    purposes = list(CONTACT_PURPOSES) if purpose is None else [purpose]
    for p in purposes:
        _check_consent_key(channel, p)
    patient = await resolve(session, org_id, patient_id)
    current = await _current_consents(session, org_id, patient.id)
    now = clock.now()
    written: list[Consent] = []
    for p in purposes:
        previous = current.get((channel, p))
        if previous is not None and previous.granted == granted:
            continue
        row = Consent(org_id=org_id, patient_id=patient.id, channel=channel, purpose=p, granted=granted,
                      source=source[:64], recorded_at=now, recorded_by_kind=who.kind,
                      recorded_by_id=who.subject_id, note=note)
        session.add(row)
        written.append(row)
    if written:
        await session.flush()
        changes = [{"channel": r.channel, "purpose": r.purpose, "granted": r.granted} for r in written]
        await audit.record(session, who, "consent", "patient", patient.id, patient_id=patient.id,
                           details={"changes": changes, "source": source})
        await events.publish(session, Event(type="patient.consent_changed", org_id=org_id,
                                            payload={"patient_id": str(patient.id), "changes": changes,
                                                     "source": source}))
    return written


@dataclass(frozen=True)
class ConsentOverview:
    patient_id: uuid.UUID
    contact: list[tuple[str | None, str, ConsentDecision]]
    data_sharing: list[tuple[str | None, str, ConsentDecision]]
    history: list[Consent]


async def consent_overview(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> ConsentOverview:
    """Every channel × purpose decision, the data-sharing ones, and the full history (audited)."""
    patient = await _require_readable(session, who, patient_id)
    current = await _current_consents(session, who.org_id, patient.id)
    contact: list[tuple[str | None, str, ConsentDecision]] = [
        (c, p, _decide(patient, c, p, current.get((c, p)))) for c in CHANNELS for p in CONTACT_PURPOSES]
    sharing: list[tuple[str | None, str, ConsentDecision]] = [
        (None, p, _decide(patient, None, p, current.get((None, p)))) for p in DATA_SHARING_PURPOSES]
    history = (await session.execute(
        select(Consent).where(Consent.org_id == who.org_id, Consent.patient_id == patient.id)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(500))).scalars().all()
    await audit.record(session, who, "read", "patient_consent", patient.id, patient_id=patient.id)
    return ConsentOverview(patient.id, contact, sharing, list(history))


async def change_consent(session: AsyncSession, who: Principal, patient_id: uuid.UUID,
                         changes: Sequence[Any]) -> ConsentOverview:
    """The API write: several changes at once, all or nothing."""
    patient = await get(session, who.org_id, patient_id)
    if patient.merged_into_id is not None:
        raise _merged_conflict(patient)
    for i, change in enumerate(changes):
        if change.channel is None and change.purpose is None:
            raise ValidationFailed.field(f"changes.{i}.purpose", "is required for data-sharing consent")
        if change.purpose is not None:
            _check_consent_key(change.channel, change.purpose, prefix=f"changes.{i}.")
    for change in changes:
        await set_consent(session, who.org_id, patient.id, channel=change.channel, purpose=change.purpose,
                          granted=change.granted, source=change.source, who=who, note=change.note)
    return await consent_overview(session, who, patient.id)


# --- timeline ----------------------------------------------------------------------------------------


async def timeline(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *,
                   before: datetime | None = None, limit: int = 50) -> list[TimelineEntry]:
    """Newest first, strictly older than `before`: every module's entries for the patient, merged."""
    patient = await _require_readable(session, who, patient_id)
    entries: list[TimelineEntry] = []
    for _, source in sorted(timeline_sources().items()):
        entries.extend(await source(session, who.org_id, patient.id, before, limit))
    entries.sort(key=lambda e: (e.at, e.source, e.resource_id), reverse=True)
    await audit.record(session, who, "read", "patient_timeline", patient.id, patient_id=patient.id)
    return entries[:limit]
