"""The name search in few round trips keeps what the slower one guaranteed: every search writes its
audit row (who, which filters, which patients it showed, in order), whatever path it takes; one
organisation never sees another's patients; the trigram threshold is the search's own, whatever the
transaction set before."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text

from prm.core.audit import AuditEntry
from prm.patients import search
from tests.fixtures.factories import make_patient


async def _searches(session, org_id: uuid.UUID) -> list[AuditEntry]:
    return list((await session.scalars(select(AuditEntry).where(
        AuditEntry.org_id == org_id, AuditEntry.action == "search").order_by(AuditEntry.id))).all())


async def test_every_name_search_path_writes_its_audit_row(client, session, org, monkeypatch):
    for given, family in [("Ana", "García"), ("Berta", "García López"), ("Carla", "Garza"), ("Dora", "Ortiz"),
                          ("Olga", "Cruz"), ("Oscar", "Calvo")]:
        await make_patient(session, org, given_name=given, family_name=family, birth_date="1990-01-01")
    key_id = await session.scalar(text("SELECT id FROM api_keys WHERE org_id = :org"), {"org": org.id})
    cases = [
        ({"q": "garcia"}, ["q"]),                                   # one word: top candidates
        ({"q": "ana garcia"}, ["q"]),                               # several words: the GIN index
        ({"q": "o c"}, ["q"]),                                      # two short prefixes: every match
        ({"q": "garcia", "offset": 50}, ["q"]),                     # a page past the end
        ({"q": "zzzqx"}, ["q"]),                                    # a word matching no name
        ({"q": "garcia", "birth_date": "1990-01-01"}, ["q", "birth_date"]),  # narrowed by another filter
        ({"q": "garcia", "include_merged": "true"}, ["q", "include_merged"]),  # straight on the names
        ({"birth_date": "1990-01-01"}, ["birth_date"]),            # no name at all
    ]
    for params, filters in cases:
        before = len(await _searches(session, org.id))
        r = await client.get("/patients", params=params)
        assert r.status_code == 200, (params, r.text)
        rows = await _searches(session, org.id)
        assert len(rows) == before + 1, params  # exactly one row per search
        row = rows[-1]
        assert (row.resource_type, row.actor_kind, row.actor_id, row.actor_role) == (
            "patient", "api_key", key_id, "admin")
        assert row.details == {"filters": filters, "patient_ids": [p["id"] for p in r.json()["items"]]}, params
    shown = [len(row.details["patient_ids"]) for row in await _searches(session, org.id)]
    assert shown == [2, 1, 2, 0, 0, 2, 2, 6]  # the paths were taken with patients to show


async def test_a_rolled_back_search_leaves_no_audit_row(session, org):
    """The audit row is written inside the search's statement, in the caller's transaction."""
    from prm.core.auth import Principal
    from prm.core.pagination import PageParams

    await make_patient(session, org, given_name="Ana", family_name="García")
    savepoint = await session.begin_nested()
    found = await search.search_page(session, Principal.system(org.id), search.Filters(q="garcia"),
                                     PageParams(limit=20))
    assert len(found.rows) == 1 and len(await _searches(session, org.id)) == 1
    await savepoint.rollback()
    assert await _searches(session, org.id) == []


async def test_name_search_sees_only_its_own_organisation(make_client, session, org, other_org):
    mine = await make_patient(session, org, given_name="María", family_name="García")
    theirs = {str((await make_patient(session, other_org, given_name=given, family_name=family)).id)
              for given, family in [("María", "García"), ("Mario", "García"), ("Marta", "García"), ("Olga", "Cruz")]}
    client = await make_client("admin")
    for q in ["garcia", "maria garcia", "mar gar", "ma ga", "o c", "garsia", "marta"]:
        page = (await client.get("/patients", params={"q": q})).json()
        ids = {p["id"] for p in page["items"]}
        assert ids <= {str(mine.id)} and page["total"] == len(ids), q
    other = await make_client("admin", for_org=other_org)
    seen = (await other.get("/patients", params={"q": "maria garcia"})).json()
    assert {p["id"] for p in seen["items"]} <= theirs and seen["total"] >= 1
    # (other tests' committed searches of their own organisations are in the table too)
    rows = (await session.execute(select(AuditEntry.org_id, func.count())
                                  .where(AuditEntry.action == "search", AuditEntry.org_id.in_([org.id, other_org.id]))
                                  .group_by(AuditEntry.org_id))).all()
    assert dict(rows) == {org.id: 7, other_org.id: 1}  # each search audited in its own organisation


async def test_the_search_threshold_whatever_the_transaction_set(session, org):
    """The dictionary-word statement sets `pg_trgm.similarity_threshold` itself: the same words match
    after duplicate detection left 0.45, at pg_trgm's default 0.3, or with 0.35 set beforehand."""
    for given, family in [("Ana", "García"), ("Bea", "Garcías"), ("Cris", "Gracia"), ("Dani", "Garza"),
                          ("Eva", "Marcia"), ("Fede", "Arcia")]:
        await make_patient(session, org, given_name=given, family_name=family)
    matched = {}
    for before in ["0.35", "0.45", "0.3", "0.9", "0.1"]:
        await session.execute(text("SELECT set_config('pg_trgm.similarity_threshold', :v, true)"), {"v": before})
        terms = await search.name_terms(session, org.id, ["garsia", "gracia"], threshold=0.35)
        matched[before] = sorted(terms.rows)
        assert await session.scalar(text("SHOW pg_trgm.similarity_threshold")) == "0.35"
    assert len({tuple(rows) for rows in matched.values()}) == 1
    assert {word for _, word, _ in matched["0.35"]} >= {"garcia", "gracia"}
    loose = await search.name_terms(session, org.id, ["garsia"], threshold=0.1)
    assert len(loose.rows) > len([r for r in matched["0.35"] if r[0] == 0])  # a lower threshold, more words
