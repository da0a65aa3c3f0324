"""The fast name search ranks exactly as the original one did: same patients, same order (ties broken
by name length, name, id), same total, for every page of a fixture with common and rare names,
accents, compound names, look-alikes and patients that left the index (merged, deleted)."""

from __future__ import annotations

import random
import uuid

import pytest
from sqlalchemy import text

from prm.core.auth import Principal
from prm.core.pagination import PageParams
from prm.patients import names, search

# The query main ran before the ranking was made to read only the top (commit 49a87de), as SQL:
# per query word, the matching dictionary words and their score, each word's matching patients
# with their best score, joined over the words; the whole match set ordered and counted.
_TERMS = """name_terms_{i} AS (
  SELECT word, CASE WHEN word = :w{i} THEN 1.0::float8 WHEN word LIKE :p{i} ESCAPE '/' THEN 0.9::float8
                    ELSE similarity(:w{i}, word) END AS score
  FROM patient_name_terms
  WHERE org_id = :org AND (word = :w{i} OR word LIKE :p{i} ESCAPE '/' {fuzzy})),
name_matches_{i} AS (
  SELECT w.patient_id, max(t.score) AS score, min(w.sort_key) AS sort_key
  FROM patient_name_words w JOIN name_terms_{i} t ON w.word = t.word
  WHERE w.org_id = :org GROUP BY w.patient_id)"""


async def _original(session, org_id: uuid.UUID, words: list[str], limit: int, offset: int):
    ctes = [_TERMS.format(i=i, fuzzy=f"OR word % :w{i}" if len(w) >= 3 else "") for i, w in enumerate(words)]
    joins = " ".join(f"JOIN name_matches_{i} m{i} ON m{i}.patient_id = m0.patient_id" for i in range(1, len(words)))
    score = " + ".join(f"m{i}.score" for i in range(len(words)))
    sql = (f"WITH {', '.join(ctes)} SELECT m0.patient_id, count(*) OVER () FROM name_matches_0 m0 {joins} "
           f"ORDER BY {score} DESC, length(m0.sort_key), m0.sort_key, m0.patient_id LIMIT :limit OFFSET :offset")
    params: dict[str, object] = {"org": org_id, "limit": limit, "offset": offset}
    for i, word in enumerate(words):
        escaped = word.replace("/", "//").replace("%", "/%").replace("_", "/_")
        params |= {f"w{i}": word, f"p{i}": escaped + "%"}
    rows = (await session.execute(text(sql), params)).all()
    if rows:
        return [r[0] for r in rows], int(rows[0][1])
    everything = (await session.execute(text(sql), params | {"limit": None, "offset": 0})).all()
    return [], len(everything)


FAMILIES = ["García", "Garcia", "Gracia", "Garcías", "Garza", "García López", "López", "Lopes", "Núñez",
            "Nuñes", "Smith", "Smyth", "Schmidt", "O'Connor", "Connor", "Li", "Lim", "Wang", "Martínez",
            "Martín", "Marín", "Marino", "Müller", "Mueller", "Sánchez-Vicario", "Søndergaard", "Ng"]
GIVEN = ["María", "Maria", "Mariana", "Mario", "Mar", "José", "Josefa", "Joseph", "Jo", "Ana", "Ana María",
         "Anna", "Li", "Zoë", "Zoe", "Chloé", "Jean-Pierre", "Björn", "Bjorn", "Ángel", "Angela"]
QUERIES = ["garcia", "GARCÍA", "garc", "gar", "ga", "garsia", "gracia", "maria garcia", "mari garc",
           "maria lopez", "jose nunez", "jo smit", "john smitt", "smith", "smyth", "li", "li wang", "lim",
           "o connor", "o'connor", "connor", "ana maria lopez", "ana maria", "anna", "mar", "ma", "mar martin",
           "jean pierre", "zoe", "bjorn muller", "sanchez vicario", "sondergaard", "ng", "zzzzqq",
           "maria maria", "garcia garcia lopez",
           # short prefixes, as typed so far: one or two letters a word (no fuzzy match), several words
           "o c", "ma ga", "m g", "li w", "j s", "a m l", "ga ma l", "z b"]
PAGES = [(20, 0), (5, 0), (5, 5), (7, 13), (50, 0), (3, 60), (200, 0), (10, 400)]


@pytest.fixture
async def fixture_patients(session, org):
    """~420 patients: every name combination once or more (ties on the whole name), some merged or
    deleted (out of the index)."""
    rng = random.Random(19)
    rows = []
    for _ in range(420):
        given, family = rng.choice(GIVEN), rng.choice(FAMILIES)
        if rng.random() < 0.2:
            family = f"{family} {rng.choice(FAMILIES)}"
        rows.append({"id": uuid.uuid4(), "org": org.id, "given": given, "family": family,
                     "status": "inactive" if rng.random() < 0.1 else "active"})
    await session.execute(text("INSERT INTO patients (id, org_id, given_name, family_name, status) "
                               "VALUES (:id, :org, :given, :family, :status)"), rows)
    gone = rng.sample(rows[1:], 40)
    await session.execute(text("UPDATE patients SET status = 'merged', merged_into_id = :survivor WHERE id = :id"),
                          [{"id": r["id"], "survivor": rows[0]["id"]} for r in gone[:25]])
    await session.execute(text("UPDATE patients SET deleted_at = now() WHERE id = :id"),
                          [{"id": r["id"]} for r in gone[25:]])
    await session.execute(text("ANALYZE patient_name_words"))
    return rows


@pytest.mark.parametrize("path", ["top candidates", "whole match set"])
async def test_ranking_equals_the_original(session, org, other_org, fixture_patients, monkeypatch, path):
    if path == "whole match set":  # every page, one word or several, from all the matches
        monkeypatch.setattr(search, "TOP_RANKED", 0)
    await session.execute(text(  # another organisation's look-alikes must change nothing
        f"INSERT INTO patients (id, org_id, given_name, family_name) VALUES ('{uuid.uuid4()}', "
        f"'{other_org.id}', 'María', 'García'), ('{uuid.uuid4()}', '{other_org.id}', 'Gar', 'Garcia')"))
    await search._set_similarity(session, 0.35)
    compared = nonempty = 0
    for query in QUERIES:
        words = search._query_words(names.fold(query))
        terms = await search.name_terms(session, org.id, words, threshold=0.35)
        for limit, offset in PAGES:
            expected = await _original(session, org.id, words, limit, offset)
            found = await _found(session, org.id, terms, PageParams(limit=limit, offset=offset))
            assert found == expected, (query, limit, offset)
            compared += 1
            nonempty += bool(expected[0])
    assert compared == len(QUERIES) * len(PAGES) and nonempty > len(QUERIES) * 3  # the fixture exercises it


async def _page(session, org_id: uuid.UUID, terms: search.NameTerms, page: PageParams) -> search.Found:
    return await search._page_of_name_matches(session, Principal.system(org_id), search.Filters(q="-"), terms, page)


async def _found(session, org_id: uuid.UUID, terms: search.NameTerms, page: PageParams):
    if not {i for i, _, _ in terms.rows} >= set(range(len(terms.words))):
        return [], 0
    found = await _page(session, org_id, terms, page)
    assert found.total_exact
    return [p.id for p in found.rows], found.total


async def test_several_words_through_the_postings_rank_the_same(session, org, fixture_patients, monkeypatch):
    monkeypatch.setattr(search, "NAME_INDEX_TERMS", 0)  # no GIN lookups: the postings of every word
    await search._set_similarity(session, 0.35)
    for query in ["maria garcia", "mari garc", "jose nunez", "ana maria lopez", "li wang"]:
        words = search._query_words(names.fold(query))
        terms = await search.name_terms(session, org.id, words, threshold=0.35)
        for limit, offset in [(20, 0), (5, 5)]:
            expected = await _original(session, org.id, words, limit, offset)
            assert await _found(session, org.id, terms, PageParams(limit=limit, offset=offset)) == expected


async def test_one_word_total_stops_counting(session, org, fixture_patients, monkeypatch):
    await search._set_similarity(session, 0.35)
    terms = await search.name_terms(session, org.id, ["garcia"], threshold=0.35)
    _, everyone = await _original(session, org.id, ["garcia"], 20, 0)
    monkeypatch.setattr(search, "TOTAL_COUNTED", everyone)
    exact = await _page(session, org.id, terms, PageParams(limit=20))
    assert (exact.total, exact.total_exact) == (everyone, True)
    monkeypatch.setattr(search, "TOTAL_COUNTED", everyone - 1)
    more = await _page(session, org.id, terms, PageParams(limit=20))
    assert (more.total, more.total_exact) == (everyone - 1, False)  # "more than everyone - 1"
    assert [p.id for p in more.rows] == [p.id for p in exact.rows]
    monkeypatch.setattr(search, "TOTAL_COUNTED", everyone)
    monkeypatch.setattr(search, "COUNTED_POSTINGS", 0.5)  # too few postings read: every match counted
    counted_apart = await _page(session, org.id, terms, PageParams(limit=20))
    assert (counted_apart.total, counted_apart.total_exact) == (everyone, True)
    two_words = await search.name_terms(session, org.id, ["maria", "garcia"], threshold=0.35)
    _, both = await _original(session, org.id, ["maria", "garcia"], 20, 0)
    monkeypatch.setattr(search, "TOTAL_COUNTED", 1)
    several = await _page(session, org.id, two_words, PageParams(limit=20))
    assert (several.total, several.total_exact) == (both, True) and both > 1  # counted in full


async def test_common_word_ties_are_broken_by_name_then_id(session, org, fixture_patients):
    await search._set_similarity(session, 0.35)
    terms = await search.name_terms(session, org.id, ["garcia"], threshold=0.35)
    ids = [p.id for p in (await _page(session, org.id, terms, PageParams(limit=200))).rows]
    rows = (await session.execute(text(
        "SELECT id, search_name FROM patients WHERE id = ANY(:ids)"), {"ids": ids})).all()
    name = dict(rows)
    exact = [i for i in ids if "garcia" in name[i].split()]  # score 1, the first tier
    assert exact == ids[:len(exact)] and len(exact) > 20
    keys = [(len(name[i]), i) for i in exact]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    by_name: dict[str, list[uuid.UUID]] = {}
    for i in exact:
        by_name.setdefault(name[i], []).append(i)
    repeated = [same for same in by_name.values() if len(same) > 1]
    assert repeated and all(same == sorted(same) for same in repeated)  # equal names: by id
