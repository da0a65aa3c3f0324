"""Committed, concurrent transactions: no duplicate provisional patients, no crossed merges.

Interleaving is forced, not timed: the first transaction takes its lock, the second is started and
we wait until PostgreSQL shows it blocked on a lock, then the first commits.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select, text

from prm.core.auth import Principal
from prm.core.errors import Conflict
from prm.patients import service as patients
from prm.patients.models import Patient
from prm.patients.schemas import PatientCreate

pytestmark = pytest.mark.slow


async def _until_someone_waits_for_a_lock(committed, task: asyncio.Task) -> None:
    for _ in range(500):
        async with committed.session() as s:
            waiting = await s.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
        if waiting or task.done():
            return
    raise AssertionError("the second transaction never blocked")


async def test_concurrent_first_messages_from_one_number_make_one_patient(committed):
    org, _ = await committed.org()
    async with committed.session() as first, committed.session() as second:
        a = await patients.create_provisional(first, org.id, phone="+34 612 000 900", source="whatsapp")
        other = asyncio.create_task(
            patients.create_provisional(second, org.id, phone="0034612000900", source="sms"))
        await _until_someone_waits_for_a_lock(committed, other)
        await first.commit()
        b = await other
        await second.commit()

    assert a.id == b.id
    async with committed.session() as s:
        count = await s.scalar(select(func.count()).select_from(Patient).where(Patient.org_id == org.id))
    assert count == 1


async def test_crossed_merges_cannot_both_win(committed):
    org, _ = await committed.org()
    who = Principal.system(org.id)
    async with committed.session() as s:
        a, _ = await patients.create(s, who, PatientCreate(given_name="Ana", family_name="Pérez"))
        b, _ = await patients.create(s, who, PatientCreate(given_name="Ana", family_name="Perez"))
        await s.commit()

    async with committed.session() as first, committed.session() as second:
        await patients.merge(first, who, a.id, b.id)
        crossed = asyncio.create_task(patients.merge(second, who, b.id, a.id))
        await _until_someone_waits_for_a_lock(committed, crossed)
        await first.commit()
        with pytest.raises(Conflict) as lost:
            await crossed
        await second.rollback()

    assert lost.value.code in {"already_merged", "survivor_merged"}
    async with committed.session() as s:
        rows = (await s.execute(select(Patient.id, Patient.status).where(Patient.org_id == org.id))).all()
    assert dict(rows) == {a.id: "active", b.id: "merged"}
