"""Patient search: filters, name matching (trigram terms and whole names), paging."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    true,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.dialects.postgresql import array as pg_array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload
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

# The deepest page end (offset + limit) of a name search ranked from the top candidates only (see
# name_ranking); deeper pages rank the whole match set (same order, more work).
TOP_RANKED = 1_000
# A one-word name search counts its matches up to this many; beyond, the total says "more than".
TOTAL_COUNTED = 1_000
# ... from at most this many postings per match counted (a patient is in a word's postings once per
# matching word of its name); in the rare case that is not enough, all are counted.
COUNTED_POSTINGS = 4
# The most keys a search of several words looks up in the GIN index of name words (each is one
# lookup: a dictionary word, or every word starting with a query word of up to PREFIX_KEY_LETTERS
# letters); with more, the postings of the words are scanned instead.
NAME_INDEX_TERMS = 200
# The longest word prefix the GIN index of name words holds as a key of its own (see the migration
# 20261130_name_search_prefixes).
PREFIX_KEY_LETTERS = 3
# How a folded name splits into words: the same in the trigger, the index and the search.
NAME_WORD_SEPARATORS = "[^[:alnum:]]+"


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


# The statements of a name search are built once per shape (number of query words, path) with bound
# parameters, and cached: building them is most of the Python cost of a search.
_ORG = bindparam("org_id", type_=PG_UUID(as_uuid=True))


def _escaped(word: str) -> str:
    return word.replace("/", "//").replace("%", "/%").replace("_", "/_")


@cache
def _name_terms_template(trigram: tuple[bool, ...]) -> Select[Any]:
    threshold = bindparam("threshold", type_=Text)
    parts = []
    for i, fuzzy in enumerate(trigram):
        word, pattern = bindparam(f"w{i}", type_=Text), bindparam(f"p{i}", type_=Text)
        starts = PatientNameTerm.word.like(pattern, escape="/")
        matches = [PatientNameTerm.word == word, starts]
        if fuzzy:  # `word % (SELECT <w> once the threshold is set)`: see _name_terms_query
            setting = func.set_config("pg_trgm.similarity_threshold", threshold, True)
            matches.append(PatientNameTerm.word.op("%")(select(case((setting.is_not(None), word))).scalar_subquery()))
        score = case((PatientNameTerm.word == word, 1.0), (starts, 0.9),
                     else_=func.similarity(word, PatientNameTerm.word))
        parts.append(select(literal(i).label("i"), PatientNameTerm.word.label("word"), score.label("score"))
                     .where(PatientNameTerm.org_id == _ORG, or_(*matches)))
    return union_all(*parts) if len(parts) > 1 else parts[0]  # type: ignore[return-value]


def _name_terms_query(org_id: uuid.UUID, words: list[str], threshold: float) -> tuple[Select[Any], dict[str, Any]]:
    """The organisation's dictionary words that match each query word `i`, with their score: equal to
    it 1, starting with it 0.9, otherwise trigram similarity (words of 3+ letters only, at least
    `threshold`). Small: read through the trigram index of `patient_name_terms`.

    `%` compares with `pg_trgm.similarity_threshold`, which the statement sets itself (for the
    transaction, as `_set_similarity` does) instead of a round trip before it: its query word is an
    uncorrelated subquery, `(SELECT CASE WHEN set_config(...) IS NOT NULL THEN :w END)`, which
    PostgreSQL evaluates once (an InitPlan), when its value is first needed: before the trigram index
    scan starts (its comparison value) and before any `%` computed row by row (its argument)."""
    params: dict[str, Any] = {"org_id": org_id, "threshold": str(threshold)}
    for i, word in enumerate(words):
        params |= {f"w{i}": word, f"p{i}": _escaped(word) + "%"}
    return _name_terms_template(tuple(len(w) >= 3 for w in words)), params


@dataclass(frozen=True)
class NameTerms:
    """The dictionary words matching each query word: `rows` are (query word index, word, score)."""

    words: list[str]
    rows: list[tuple[int, str, float]]

    def of(self, i: int) -> list[str]:
        return [word for j, word, _ in self.rows if j == i]

    def params(self) -> dict[str, Any]:
        i, word, score = (list(column) for column in zip(*self.rows, strict=True))
        return {"term_i": i, "term_word": word, "term_score": score}


def _terms_table() -> Any:
    """The matching dictionary words (NameTerms.params) as a table (i, word, score) in a statement."""
    rows = func.unnest(bindparam("term_i", type_=ARRAY(Integer)), bindparam("term_word", type_=ARRAY(Text)),
                       bindparam("term_score", type_=ARRAY(Float(53)))).table_valued("i", "word", "score")
    rows = rows.render_derived()
    return select(rows.c.i, rows.c.word.collate("C").label("word"), rows.c.score).cte("name_terms")


async def name_terms(session: AsyncSession, org_id: uuid.UUID, words: list[str], *, threshold: float
                     ) -> NameTerms:
    result = await session.execute(*_name_terms_query(org_id, words, threshold))
    return NameTerms(words, [(int(i), str(word), float(score)) for i, word, score in result])


def _score(terms: Any, count: int) -> ColumnElement[Any]:
    """The sum over the `count` query words (in query order) of the best score of the joined words
    for each; NULL unless every query word matched."""
    per_word = [func.max(terms.c.score).filter(terms.c.i == i) for i in range(count)]
    score: ColumnElement[Any] = per_word[0]
    for best in per_word[1:]:
        score = score + best
    return score


def _name_matches(count: int) -> Any:
    """Live patients whose name has, for each of the `count` query words, a word equal to it (score
    1), starting with it (0.9) or similar to it (trigram similarity); the score is the sum over query
    words (in query order) of the best score of the patient's words for it.

    Found from the postings of the matching dictionary words (`patient_name_words`, read index-only
    on its primary key), one row per patient: (patient_id, score). Parameters: org_id, NameTerms.params.
    """
    table = _terms_table()
    score = _score(table, count)
    return (select(PatientNameWord.patient_id, score.label("score"))
            .join(table, PatientNameWord.word == table.c.word)
            .where(PatientNameWord.org_id == _ORG)
            .group_by(PatientNameWord.patient_id)
            .having(score.is_not(None))
            .cte("name_matches"))


def name_ranking(org_id: uuid.UUID, terms: NameTerms, paging: PageParams) -> tuple[Select[Any], dict[str, Any]]:
    """One page of the name search ranking, a statement and its parameters giving rows (patient_id,
    total, complete, score, sort_key): best score first, then the shorter name (`sort_key`, the
    patient's folded name), the name, the id. `total` counts the
    matches, exactly, except for one query word: the distinct patients of its first postings (see
    `_single_word_page`), with `complete` false when the postings did not run out.

    Only the top of the ranking is ordered, never the whole match set (10,000 patients share a common
    surname at 1M), while the page ends within TOP_RANKED:
    * one query word: each matching dictionary word gives its first `offset + limit` patients in
      (name length, name, id) order straight from an index; the page is ranked among these
      candidates, each scored by the best of the words it was found by. The global top
      `offset + limit` are all candidates, with their true score: a patient whose best word is `t`
      and who is not among `t`'s first ones is preceded by as many patients scoring at least as
      much with a smaller name key (in the true ranking and among the candidates alike).
    * several query words, at most NAME_INDEX_TERMS dictionary words in all: the patients having a
      word of each are found by the GIN index of their name's words (bitmaps intersected), then
      scored from their name.
    Otherwise (a deep page, or many dictionary words, e.g. two short prefixes) every match is scored
    from the postings, index-only, and only those scoring at least the `offset + limit`-th best are
    ordered by name.
    """
    end = paging.offset + paging.limit
    params = {"org_id": org_id, "page_limit": paging.limit, "page_offset": paging.offset, "page_end": end,
              **terms.params()}
    if _stops_counting(terms, paging):
        params["count_limit"] = int(COUNTED_POSTINGS * (TOTAL_COUNTED + 1))
        return _single_word_page(), params
    keys = [_name_keys(org_id, terms, i) for i in range(len(terms.words))]
    if end <= TOP_RANKED and sum(len(k) for k in keys) <= NAME_INDEX_TERMS:
        params |= {f"keys_{i}": k for i, k in enumerate(keys)}
        return _name_index_page(len(terms.words)), params
    return _whole_match_set_page(len(terms.words)), params | {"cut_offset": end - 1}


def _name_keys(org_id: uuid.UUID, terms: NameTerms, i: int) -> list[str]:
    """The keys of `ix_patients_name_search_keys` whose patients match query word `i`: its dictionary
    words ("<org id>:<word>"), or, for a word of up to PREFIX_KEY_LETTERS letters, the one key of
    every word starting with it ("<org id>:^<word>": thousands of dictionary words for one or two
    letters) and those only similar to it."""
    word = terms.words[i]
    if len(word) > PREFIX_KEY_LETTERS:
        return [f"{org_id}:{term}" for term in terms.of(i)]
    return [f"{org_id}:^{word}"] + [f"{org_id}:{term}" for term in terms.of(i) if not term.startswith(word)]


_LIMIT, _OFFSET = bindparam("page_limit", type_=Integer), bindparam("page_offset", type_=Integer)


@cache
def _whole_match_set_page(count: int) -> Select[Any]:
    matches = _name_matches(count)
    cut = (select(matches.c.score).order_by(matches.c.score.desc())
           .offset(bindparam("cut_offset", type_=Integer)).limit(1).scalar_subquery())
    sort_key = (select(PatientNameWord.sort_key)
                .where(PatientNameWord.org_id == _ORG, PatientNameWord.patient_id == matches.c.patient_id)
                .limit(1).scalar_subquery())
    top = (select(matches.c.patient_id, matches.c.score, sort_key.label("sort_key"))
           .where(or_(cut.is_(None), matches.c.score >= cut)).subquery("top_matches"))
    total = select(func.count()).select_from(matches).scalar_subquery()
    return (select(top.c.patient_id, total.label("total"), true().label("complete"), top.c.score, top.c.sort_key)
            .order_by(top.c.score.desc(), func.length(top.c.sort_key), top.c.sort_key, top.c.patient_id)
            .limit(_LIMIT).offset(_OFFSET))


def _stops_counting(terms: NameTerms, paging: PageParams) -> bool:
    """Whether the ranking counts the matches only up to TOTAL_COUNTED + 1 (one query word, a page
    within TOP_RANKED)."""
    return len(terms.words) == 1 and paging.offset + paging.limit <= TOP_RANKED


@cache
def _single_word_page() -> Select[Any]:
    table = _terms_table()
    word = aliased(PatientNameWord)
    first = (select(word.patient_id, word.sort_key)
             .where(word.org_id == _ORG, word.word == table.c.word)
             .order_by(func.length(word.sort_key), word.sort_key, word.patient_id)
             .limit(bindparam("page_end", type_=Integer)).lateral("first_postings"))
    # A candidate's best score among the words it was found by is its true score whenever it makes
    # the page (its best word's first ones would precede it otherwise).
    scored = (select(first.c.patient_id, func.max(table.c.score).label("score"),
                     func.min(first.c.sort_key).label("sort_key"))
              .select_from(table).join(first, true()).group_by(first.c.patient_id).subquery("scored"))
    # Distinct patients among the first `count_limit` postings (index-only): TOTAL_COUNTED + 1 of
    # them say "more than TOTAL_COUNTED"; fewer are the exact count when the postings ran out first.
    postings = (select(PatientNameWord.patient_id).select_from(table)
                .join(PatientNameWord, and_(PatientNameWord.org_id == _ORG, PatientNameWord.word == table.c.word))
                .limit(bindparam("count_limit", type_=Integer)).cte("counted"))
    total = select(func.count(postings.c.patient_id.distinct())).scalar_subquery()
    complete = select(func.count() < bindparam("count_limit", type_=Integer)).select_from(postings).scalar_subquery()
    return (select(scored.c.patient_id, total.label("total"), complete.label("complete"), scored.c.score,
                   scored.c.sort_key)
            .order_by(scored.c.score.desc(), func.length(scored.c.sort_key), scored.c.sort_key,
                      scored.c.patient_id)
            .limit(_LIMIT).offset(_OFFSET))


@cache
def _name_index_page(count: int) -> Select[Any]:
    name_keys = func.prm_name_search_keys(Patient.org_id, Patient.search_name)  # GIN indexed, see _name_keys
    matched = (select(Patient.id, Patient.search_name)
               .where(Patient.org_id == _ORG, Patient.deleted_at.is_(None), Patient.status != "merged",
                      *[name_keys.op("&&")(bindparam(f"keys_{i}", type_=ARRAY(Text))) for i in range(count)])
               .cte("matched"))
    table = _terms_table()
    word = (func.unnest(func.regexp_split_to_array(matched.c.search_name, NAME_WORD_SEPARATORS))
            .table_valued("word").render_derived().lateral("name_word"))
    score = _score(table, count)
    scored = (select(matched.c.id, matched.c.search_name, score.label("score"))
              .select_from(matched).join(word, true()).join(table, table.c.word == word.c.word.collate("C"))
              .group_by(matched.c.id, matched.c.search_name).having(score.is_not(None)).subquery("scored"))
    total = select(func.count()).select_from(matched).scalar_subquery()
    return (select(scored.c.id.label("patient_id"), total.label("total"), true().label("complete"), scored.c.score,
                   scored.c.search_name.label("sort_key"))
            .order_by(scored.c.score.desc(), func.length(scored.c.search_name), scored.c.search_name, scored.c.id)
            .limit(_LIMIT).offset(_OFFSET))


def _trigram_name_filter(stmt: Select[Any], words: list[str]) -> Select[Any]:
    """Name search straight on `patients.search_name` (trigram GIN index): used when merged patients
    are included, since the word index only holds live patients."""
    for word in words:
        similar: ColumnElement[bool] = Patient.search_name.op("%>>")(word)
        starts = Patient.search_name.regexp_match(r"\m" + re.escape(word))
        stmt = stmt.where(or_(similar, starts) if len(word) >= 3 else similar)
    return stmt


@dataclass(frozen=True)
class Found:
    """A page of patients and how many match: exactly, or, when `total_exact` is false, more than
    `total` (a one-word name search stops counting after TOTAL_COUNTED)."""

    rows: list[Patient]
    total: int
    total_exact: bool = True


async def search(session: AsyncSession, who: Principal, filters: Filters, paging: PageParams
                 ) -> tuple[list[Patient], int]:
    """`search_page` as (rows, total); see there for a total that stops counting."""
    found = await search_page(session, who, filters, paging)
    return found.rows, found.total


async def search_page(session: AsyncSession, who: Principal, filters: Filters, paging: PageParams) -> Found:
    """Filtered, paginated list. With `q`, best name matches first; otherwise by family, given name."""
    org_id = who.org_id
    stmt = _live(org_id)
    if not filters.include_merged:
        stmt = stmt.where(Patient.status != "merged")
    narrowed, params = False, {}
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
        terms = await name_terms(session, org_id, _query_words(query),
                                 threshold=_settings(session).patient_search_similarity)
        if not {i for i, _, _ in terms.rows} >= set(range(len(terms.words))):  # a word matches no name
            await _audit_search(session, who, filters, [])
            return Found([], 0)
        if not narrowed:  # audited in the same statement
            return await _page_of_name_matches(session, who, filters, terms, paging)
        matches, params = _name_matches(len(terms.words)), {"org_id": org_id, **terms.params()}
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
        .limit(paging.limit).offset(paging.offset), params)).all()
    rows = [row[0] for row in result]
    if result:
        total = int(result[0][1])
    else:
        total = int(await session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()), params)
                    or 0)
    await _audit_search(session, who, filters, rows)
    return Found(rows, total)


def _ranked_order(ranked: Any) -> list[ColumnElement[Any]]:
    return [ranked.c.score.desc(), func.length(ranked.c.sort_key), ranked.c.sort_key, ranked.c.patient_id]


@cache
def _loaded_page(ranking: Select[Any]) -> Select[Any]:
    """One statement for a page of name matches: the ranking (a `name_ranking` statement), the page's
    patients with their phones, emails and identifiers (joined: a page is a few dozen rows), and the
    search's audit row naming them (a data-modifying CTE, written whether or not rows come back).
    Rows: (Patient, total, complete) in ranking order, once per joined contact row."""
    ranked = ranking.cte("ranked")
    page = (select(ranked.c.patient_id, ranked.c.score, ranked.c.sort_key)
            .join(Patient, Patient.id == ranked.c.patient_id)
            .where(Patient.org_id == _ORG, Patient.deleted_at.is_(None)).cte("page"))
    found = (select(func.jsonb_agg(aggregate_order_by(cast(page.c.patient_id, Text), *_ranked_order(page))))
             .scalar_subquery())
    details = func.jsonb_build_object("filters", bindparam("audit_filters", type_=JSONB), "patient_ids",
                                      func.coalesce(found, cast(literal("[]"), JSONB)))
    written = audit.insert_with(details).cte("audit_row")
    return (select(Patient, ranked.c.total, ranked.c.complete)
            .join(ranked, ranked.c.patient_id == Patient.id)
            .where(Patient.org_id == _ORG, Patient.deleted_at.is_(None))
            .order_by(*_ranked_order(ranked))
            .options(joinedload(Patient.phones), joinedload(Patient.emails), joinedload(Patient.identifiers))
            .add_cte(written))


async def _page_of_name_matches(session: AsyncSession, who: Principal, filters: Filters, terms: NameTerms,
                                paging: PageParams) -> Found:
    """Rank, count, page and audit from the name indexes alone, loading only the page's patients: one
    round trip (two when the page is past the end, or a one-word total needs counting in full)."""
    org_id = who.org_id
    ranking, params = name_ranking(org_id, terms, paging)
    params |= audit.params(who, "search", "patient") | {"audit_filters": filters.used()}
    result = (await session.execute(_loaded_page(ranking), params)).unique().all()
    if not result:
        matches = _name_matches(len(terms.words))
        params = {"org_id": org_id, **terms.params()}
        return Found([], int(await session.scalar(select(func.count()).select_from(matches), params) or 0))
    rows, total, complete = [row[0] for row in result], int(result[0][1]), bool(result[0][2])
    if not _stops_counting(terms, paging):
        return Found(rows, total)
    if total > TOTAL_COUNTED:
        return Found(rows, TOTAL_COUNTED, total_exact=False)
    if not complete:  # the postings counted held fewer patients than TOTAL_COUNTED + 1: count all
        params = {"org_id": org_id, **terms.params()}
        total = int(await session.scalar(select(func.count()).select_from(_name_matches(1)), params) or 0)
    return Found(rows, total)


async def _audit_search(session: AsyncSession, who: Principal, filters: Filters, rows: list[Patient]) -> None:
    """The search's audit row (a name search of the indexes writes it in its own statement instead:
    `_loaded_page`), written now: one INSERT, without the ORM's unit of work."""
    details = {"filters": filters.used(), "patient_ids": [str(p.id) for p in rows]}
    await session.execute(_AUDIT_SEARCH, audit.params(who, "search", "patient") | {"audit_details": details})


_AUDIT_SEARCH = audit.insert_with(bindparam("audit_details", type_=JSONB))


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
