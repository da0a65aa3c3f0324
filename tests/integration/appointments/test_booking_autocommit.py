"""`POST /appointments` on its one-statement path runs that statement as its own transaction: psycopg
sends no `BEGIN` before it and no `COMMIT` after it (`book(..., standalone=True)`,
`prm.core.db.autocommit`). What the server receives is read from libpq's own trace of the connection,
not from SQLAlchemy (which never sees psycopg's `BEGIN`). Every other path keeps its transaction: a
stale copy of the reference data, a refused booking, a caller with a transaction of its own; and a
connection goes back to the pool in transaction mode."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from psycopg import pq
from sqlalchemy import func, select, text

from prm.appointments import reference
from prm.appointments import service as appointments
from prm.appointments.models import Appointment, AppointmentChange
from prm.core import clock
from prm.core.audit import AuditEntry
from prm.core.auth import Principal
from prm.core.db import Database
from tests.fixtures.wire import on_the_wire

from .conftest import NOW, build_clinic, make_patient
from .support import at
from .test_double_booking import _cleanup_reminder_jobs

pytestmark = pytest.mark.slow

GUARDED = "guard AS MATERIALIZED"  # the one-statement booking (`prm.core.batch`, with its guard)
OPENING = "pg_advisory_xact_lock"  # a statement taking the calendar locks


@pytest.fixture
async def setup(committed: Any) -> AsyncIterator[tuple[Any, Any, Any, list[uuid.UUID]]]:
    """A committed clinic, an admin client and 30 patients; the process's copy of the clinic's
    reference data is taken by two bookings (the key's first use writes its last-used time, so the
    first booking keeps what it read to itself)."""
    org, key = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        patients = [(await make_patient(s, org.id, given=f"P{i}")).id for i in range(30)]
        await s.commit()
    client = committed.client(key)
    with clock.frozen(NOW):
        for n, hour in enumerate((9, 10)):
            r = await client.post("/appointments", json=_body(clinic, patients[n], at(27, hour)))
            assert r.status_code == 201, r.text
    assert reference.cached(org.id) is not None
    yield org, client, clinic, patients[2:]
    await _cleanup_reminder_jobs(committed, org.id)


def _body(clinic: Any, patient: uuid.UUID, start: Any, **extra: Any) -> dict[str, Any]:
    return {"patient_id": str(patient), "service_id": str(clinic.cleaning.id),
            "practitioner_id": str(clinic.vega.id), "start_at": start.isoformat(), **extra}


async def _rows(committed: Any, org_id: uuid.UUID) -> list[int]:
    async with committed.session() as s:
        return [await s.scalar(select(func.count()).select_from(model).where(model.org_id == org_id))
                for model in (Appointment, AppointmentChange, AuditEntry)]


async def test_a_booking_is_one_statement_without_begin_or_commit(committed: Any, setup: Any) -> None:
    org, client, clinic, patients = setup
    before = await _rows(committed, org.id)
    with clock.frozen(NOW), on_the_wire(committed.db.engine) as wire:
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 9)))
    assert r.status_code == 201, r.text
    assert len(wire) == 1 and len(wire[0].sent) == 1, [c.sent for c in wire]
    checkout = wire[0]
    statement = checkout.sent[0]  # no BEGIN before it, no COMMIT after it: it was its own transaction
    assert GUARDED in statement and OPENING in statement
    assert checkout.autocommit_in_pool is False  # SQLAlchemy set the connection back as it returned
    # and it is all there, committed: the appointment, its history and its audit entry
    assert await _rows(committed, org.id) == [n + 1 for n in before]
    stored = await client.get(f"/appointments/{r.json()['id']}")
    assert stored.status_code == 200 and stored.json()["start_at"] == r.json()["start_at"], stored.text


async def test_a_stale_copy_is_decided_in_a_transaction(committed: Any, setup: Any) -> None:
    _, client, clinic, patients = setup
    async with committed.session() as s:  # another process, by hand: the trigger bumps the version
        await s.execute(text("UPDATE services SET duration_minutes = 45 WHERE id = :id"), {"id": clinic.cleaning.id})
        await s.commit()
    with clock.frozen(NOW), on_the_wire(committed.db.engine) as wire:
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 9)))
    assert r.status_code == 201, r.text
    assert r.json()["end_at"] == at(24, 9, 45).isoformat().replace("+00:00", "Z")  # the new duration
    # the guarded statement ran on its own and wrote nothing (its version was not current); then the
    # booking was decided in a transaction, on a connection back in transaction mode: the locks, the
    # version and the patient first, the reference data, the write, and the commit
    assert len(wire) == 2 and len(wire[0].sent) == 1, [c.sent for c in wire]
    first, second = wire
    assert GUARDED in first.sent[0]
    assert second.sent[0].startswith("BEGIN") and second.sent[-1] == "COMMIT", second.sent
    assert OPENING in second.sent[1] and "INSERT INTO appointments" in second.sent[-2], second.sent
    inside = second.sent[1:-1]
    assert not [s for s in inside if s.split(" ")[0] in ("BEGIN", "COMMIT", "ROLLBACK")], inside
    assert first.autocommit_in_pool is False and second.autocommit_in_pool is False


async def test_a_refused_booking_is_diagnosed_in_a_transaction(committed: Any, setup: Any) -> None:
    org, client, clinic, patients = setup
    with clock.frozen(NOW):
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 10)))
        assert r.status_code == 201, r.text
        before = await _rows(committed, org.id)
        for body, code in (
            (_body(clinic, patients[1], at(24, 10, 30)), "slot_taken"),  # within the buffers
            (_body(clinic, patients[0], at(24, 10, 15), practitioner_id=str(clinic.ruiz.id)), "patient_overlap"),
        ):
            with on_the_wire(committed.db.engine) as wire:
                r = await client.post("/appointments", json=body)
            assert r.status_code == 409 and r.json()["code"] == code, r.text
            # the guarded statement, on its own, wrote nothing; the refusal is decided again under the
            # locks, in a transaction (its insert refused too), explained, and rolled back
            assert len(wire) == 2 and len(wire[0].sent) == 1, [c.sent for c in wire]
            first, second = wire
            assert GUARDED in first.sent[0]
            assert second.sent[0].startswith("BEGIN") and second.sent[-1] == "ROLLBACK", second.sent
            assert OPENING in second.sent[1], second.sent
            assert "INSERT INTO appointments" in second.sent[-3] and "FROM appointments" in second.sent[-2], \
                second.sent
        assert await _rows(committed, org.id) == before


async def test_the_race_for_one_slot_with_a_warm_copy(committed: Any, setup: Any) -> None:
    """24 clients for one slot, each on the one-statement path: one booking; the others, refused by
    the exclusion constraint in their own statement, are decided again in a transaction (409)."""
    org, client, clinic, patients = setup
    racers = 24
    clients = [committed.client(client.headers["Authorization"].split(" ", 1)[1]) for _ in range(racers)]
    with clock.frozen(NOW), on_the_wire(committed.db.engine) as wire:
        responses = await asyncio.gather(*(
            c.post("/appointments", json=_body(clinic, patients[i], at(24, 11))) for i, c in enumerate(clients)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * (racers - 1), [r.text for r in responses if r.status_code not in (201, 409)]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
    async with committed.session() as s:
        held = await s.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.org_id == org.id, Appointment.start_at == at(24, 11)))
    assert held == 1
    # every racer sent its guarded statement on its own (no BEGIN first)
    assert sum(1 for c in wire if c.sent and GUARDED in c.sent[0]) == racers, [c.sent[:1] for c in wire]
    assert all(c.autocommit_in_pool is False for c in wire)


async def test_a_pooled_connection_is_back_in_transaction_mode(committed: Any, setup: Any,
                                                               database_url: str) -> None:
    """One connection in the pool: after a booking ran on it without a transaction, the next session
    on it gets a transaction again (its write rolls back)."""
    org, _, clinic, patients = setup
    who = Principal.system(org.id)
    single = Database.connect(database_url, pool_size=1, max_overflow=0, name="prm-test")
    try:
        with clock.frozen(NOW):
            async with single.sessionmaker() as s:
                booked = await appointments.book(s, who, _data(clinic, patients[0], at(25, 9)), standalone=True)
                driver = (await s.connection()).sync_connection.connection.driver_connection  # type: ignore[union-attr]
                assert driver.autocommit and driver.info.transaction_status == pq.TransactionStatus.IDLE
                await s.commit()
            assert driver.autocommit is False
            async with single.sessionmaker() as s:
                other = (await appointments.book(s, who, _data(clinic, patients[1], at(25, 10)), standalone=False)).id
                assert (await s.connection()).sync_connection.connection.driver_connection is driver  # type: ignore[union-attr]
                assert driver.info.transaction_status == pq.TransactionStatus.INTRANS
                await s.rollback()
    finally:
        await single.dispose()
    async with committed.session() as s:
        assert await s.get(Appointment, booked.id) is not None
        assert await s.get(Appointment, other) is None


async def test_a_booking_in_the_callers_transaction_rolls_back_with_it(committed: Any, setup: Any) -> None:
    """Only a session that has begun nothing and a caller that says the booking is all it does get a
    booking committed on its own: a caller with its own transaction (the booking assistant, the
    agents' tool) keeps the booking in it, and rolls it back with the rest."""
    org, _, clinic, patients = setup
    who = Principal.system(org.id)
    ids = []
    with clock.frozen(NOW):
        async with committed.session() as s:  # a row added (not yet sent), then a standalone booking
            s.add(AuditEntry(org_id=org.id, actor_kind="system", actor_role="system", action="test",
                             resource_type="test"))
            ids.append((await appointments.book(s, who, _data(clinic, patients[0], at(26, 9)), standalone=True)).id)
            await s.rollback()
        async with committed.session() as s:  # a statement sent first
            await s.execute(text("SELECT 1"))
            ids.append((await appointments.book(s, who, _data(clinic, patients[1], at(26, 10)), standalone=True)).id)
            await s.rollback()
        async with committed.session() as s:  # a fresh session, but the caller may write more
            ids.append((await appointments.book(s, who, _data(clinic, patients[2], at(26, 11)))).id)
            await s.rollback()
        async with committed.session() as s:  # the booking assistant's savepoint
            async with s.begin_nested():
                ids.append((await appointments.book(s, who, _data(clinic, patients[3], at(26, 12)),
                                                    standalone=True)).id)
            await s.rollback()
    async with committed.session() as s:
        assert await s.scalar(select(func.count()).select_from(Appointment).where(Appointment.id.in_(ids))) == 0
        assert await s.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.org_id == org.id, AuditEntry.action == "test")) == 0


def _data(clinic: Any, patient: uuid.UUID, start: Any) -> dict[str, Any]:
    return {"patient_id": patient, "service_id": clinic.cleaning.id, "practitioner_id": clinic.vega.id,
            "start_at": start}
