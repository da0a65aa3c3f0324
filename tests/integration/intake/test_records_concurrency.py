"""Committed, concurrent requests: the unique constraints decide, not checks in code.

Ten clients upserting the same item of a session at once make one record; five creates with the
same external reference at once make one session.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from prm.intake.models import IntakeRecord, IntakeSession

pytestmark = pytest.mark.slow


async def test_concurrent_upserts_of_one_item_make_one_record(committed) -> None:
    _org, key = await committed.org(role="practitioner")
    client = committed.client(key)
    s = (await client.post("/intake/sessions", json={"source": "web_form"})).json()
    url = f"/intake/sessions/{s['id']}/records/med-1"

    async def put(n: int):
        c = committed.client(key)
        return await c.put(url, json={"type": "medication", "data": {"name": "Metformin", "dose": f"{n}00 mg"}})

    answers = await asyncio.gather(*(put(n) for n in range(1, 11)))
    assert sorted(r.status_code for r in answers) == [200] * 9 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    assert sorted(r.json()["revision"] for r in answers) == list(range(1, 11))
    async with committed.session() as db:
        rows = (await db.scalars(select(IntakeRecord).where(IntakeRecord.session_id == uuid.UUID(s["id"])))).all()
        version = await db.scalar(select(IntakeSession.version).where(IntakeSession.id == uuid.UUID(s["id"])))
    assert len(rows) == 1 and rows[0].revision == 10 and version == 11
    # the last writer's data is the stored one
    last = max(answers, key=lambda r: r.json()["revision"])
    assert rows[0].data == last.json()["data"]


async def test_concurrent_creates_with_one_external_ref_make_one_session(committed) -> None:
    org, key = await committed.org(role="coordinator")

    async def create():
        return await committed.client(key).post("/intake/sessions", json={"source": "voice",
                                                                          "external_ref": "call-42"})

    answers = await asyncio.gather(*(create() for _ in range(5)))
    assert sorted(r.status_code for r in answers) == [200] * 4 + [201], [r.text for r in answers]
    assert len({r.json()["id"] for r in answers}) == 1
    async with committed.session() as db:
        count = await db.scalar(select(func.count()).select_from(IntakeSession).where(IntakeSession.org_id == org.id))
    assert count == 1


async def test_stale_if_match_loses_to_the_first_writer(committed) -> None:
    _org, key = await committed.org(role="practitioner")
    client = committed.client(key)
    s = (await client.post("/intake/sessions", json={"source": "staff"})).json()
    url = f"/intake/sessions/{s['id']}/records"

    async def put(item: str):
        return await committed.client(key).put(f"{url}/{item}", json={"type": "note", "data": {"text": item}},
                                               headers={"If-Match": '"1"'})

    answers = await asyncio.gather(*(put(f"n{i}") for i in range(4)))
    assert sorted(r.status_code for r in answers) == [201, 412, 412, 412], [r.text for r in answers]
    async with committed.session() as db:
        count = await db.scalar(select(func.count()).select_from(IntakeRecord)
                                .where(IntakeRecord.session_id == uuid.UUID(s["id"])))
    assert count == 1


async def test_the_database_refuses_a_second_row_for_one_item(session, org) -> None:
    """The guarantee under the upsert: whatever code path writes, (session, item) is unique."""
    from sqlalchemy.exc import IntegrityError

    row = IntakeSession(org_id=org.id, source="staff", created_by="test")
    session.add(row)
    await session.flush()
    session.add(IntakeRecord(org_id=org.id, session_id=row.id, client_item_id="x", type="note", data={"text": "a"}))
    await session.flush()
    with pytest.raises(IntegrityError) as twice:
        async with session.begin_nested():
            session.add(IntakeRecord(org_id=org.id, session_id=row.id, client_item_id="x", type="note",
                                     data={"text": "b"}))
            await session.flush()
    assert "uq_intake_records_session_item" in str(twice.value)
