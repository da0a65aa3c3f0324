"""Patient search: filters, name matching (trigram terms and whole names), paging."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, Text, case, cast, func, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from prm.core import audit
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.pagination import PageParams, matching
from prm.patients import names
from prm.patients.models import (
    Patient,
    PatientEmail,
    PatientIdentifier,
    PatientNameTerm,
    PatientNameWord,
    PatientPhone,
)
from prm.patients.reads import _live, _with_contacts
from prm.patients.validation import _phone_region, _settings, normalise_phone

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
        number = normalise_phone(filters.phone, field="phone", region=await _phone_region(session, org_id))
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
        await _set_similarity(session, _settings(session).patient_search_similarity)
        matches = _name_matches(org_id, _query_words(query))
        if not narrowed:
            rows, total = await _page_of_name_matches(session, org_id, matches, paging)
            await _audit_search(session, who, filters, rows)
            return rows, total
        stmt = stmt.join(matches, matches.c.patient_id == Patient.id)
        ordered = stmt.order_by(matches.c.score.desc(), func.length(Patient.search_name), Patient.family_name,
                                Patient.given_name, Patient.id)
    elif query:
        await _set_similarity(session, _settings(session).patient_search_similarity)
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


async def active_ids(
    session: AsyncSession, org_id: uuid.UUID, *, ids: Sequence[uuid.UUID] | None = None,
    preferred_language: str | None = None, preferred_channel: str | None = None, tags: Sequence[str] = (),
    limit: int = 10_000,
) -> list[uuid.UUID]:
    """Active, live patients of the organisation (recipients of a batch): those among `ids`, or those
    matching every filter given (`tags`: any of them), oldest first; one query, at most `limit`."""
    stmt = select(Patient.id).where(Patient.org_id == org_id, Patient.deleted_at.is_(None), Patient.status == "active")
    if ids is not None:
        stmt = stmt.where(Patient.id.in_(list(ids)))
    stmt = matching(stmt, Patient, preferred_language=preferred_language, preferred_channel=preferred_channel)
    if tags:
        stmt = stmt.where(Patient.tags.op("&&")(cast(pg_array(list(tags)), ARRAY(Text))))
    return list(await session.scalars(stmt.order_by(Patient.created_at, Patient.id).limit(limit)))
