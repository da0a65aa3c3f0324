"""Real concurrent, committed transactions racing for one slot: exactly one booking survives."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from prm.appointments import service
from prm.appointments.models import Appointment, AppointmentReminder
from prm.core import clock, jobs
from prm.core.auth import Principal

from .conftest import NOW, build_clinic, make_patient
from .support import at, book

RACERS = 24


async def _cleanup_reminder_jobs(committed, org_id) -> None:  # type: ignore[no-untyped-def]
    """Committed jobs of this org (reminders, event deliveries) must not run in later tests that move the clock."""
    async with committed.session() as s:
        for job_id in await s.scalars(select(AppointmentReminder.job_id).where(AppointmentReminder.org_id == org_id)):
            if job_id is not None:
                await jobs.cancel_pending(s, job_id)
        # nor may its reminders (the sweep fires every organisation's)
        await s.execute(text("UPDATE appointment_reminders SET status = 'void' WHERE org_id = :org "
                             "AND status = 'scheduled'"), {"org": org_id})
        await s.commit()
    await committed.cancel_queued_jobs(org_id)


@pytest.mark.slow
async def test_double_booking_prevention(committed) -> None:  # type: ignore[no-untyped-def]
    org, key = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        patients = [await make_patient(s, org.id, given=f"P{i}") for i in range(RACERS)]
        # the second race's patient takes no part in the first (had it won that one, it would hold two)
        one = await make_patient(s, org.id, given="Pair")
        await s.commit()
    start = "2026-03-24T10:00:00+01:00"
    try:
        with clock.frozen(NOW):
            clients = [committed.client(key) for _ in range(RACERS)]

            async def attempt(i: int):  # type: ignore[no-untyped-def]
                return await clients[i].post(
                    "/appointments",
                    json={
                        "patient_id": str(patients[i].id),
                        "service_id": str(clinic.cleaning.id),
                        "practitioner_id": str(clinic.vega.id),
                        "start_at": start,
                    },
                )

            responses = await asyncio.gather(*(attempt(i) for i in range(RACERS)))
            codes = sorted(r.status_code for r in responses)
            assert codes == [201] + [409] * (RACERS - 1), [r.text for r in responses if r.status_code not in (201, 409)]
            assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
            async with committed.session() as s:
                held = await s.scalar(
                    select(func.count())
                    .select_from(Appointment)
                    .where(
                        Appointment.org_id == org.id,
                        Appointment.practitioner_id == clinic.vega.id,
                        Appointment.start_at == datetime(2026, 3, 24, 9, tzinfo=UTC),
                    )
                )
                assert held == 1

            # one patient racing for two practitioners at the same time: one wins, one is patient_overlap

            async def book_with(practitioner_id, i):  # type: ignore[no-untyped-def]
                return await clients[i].post(
                    "/appointments",
                    json={
                        "patient_id": str(one.id),
                        "service_id": str(clinic.cleaning.id),
                        "practitioner_id": str(practitioner_id),
                        "start_at": "2026-03-25T11:00:00+01:00",
                    },
                )

            pair = await asyncio.gather(book_with(clinic.vega.id, 0), book_with(clinic.ruiz.id, 1))
            assert sorted(r.status_code for r in pair) == [201, 409]
            assert next(r for r in pair if r.status_code == 409).json()["code"] == "patient_overlap"
            async with committed.session() as s:
                mine = await s.scalar(
                    select(func.count())
                    .select_from(Appointment)
                    .where(Appointment.patient_id == one.id, Appointment.status.in_(("booked", "confirmed")))
                )
                assert mine == 1
                # the public function sees the same truth
                assert len(await service.upcoming_for_patient(s, Principal.system(org.id), one.id)) == 1
                await s.commit()
    finally:
        await _cleanup_reminder_jobs(committed, org.id)


async def _waiting_lock(committed) -> str | None:  # type: ignore[no-untyped-def]
    """Wait (by condition, not by time) until some backend of this database waits on a lock; its lock type
    (`advisory` for a calendar lock, `transactionid` for another transaction's uncommitted row)."""
    async with committed.session() as watcher:
        for _ in range(2000):
            waiting = await watcher.scalar(
                text(
                    "SELECT l.locktype FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE NOT l.granted AND a.datname = current_database() LIMIT 1"
                )
            )
            if waiting:
                return str(waiting)
            await asyncio.sleep(0.005)
            await watcher.commit()
    return None


@pytest.mark.slow
async def test_constraint_catches_what_the_precheck_cannot_see(committed) -> None:  # type: ignore[no-untyped-def]
    """A writer that does not take the calendar lock holds an uncommitted overlapping row: the booking's
    check cannot see it, its insert waits for it, and the exclusion constraint answers (409, not 500)."""
    from prm.core.errors import Conflict

    org, _ = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        first, second = await make_patient(s, org.id, given="A"), await make_patient(s, org.id, given="B")
        await s.commit()
    who = Principal.system(org.id)
    start = datetime(2026, 3, 24, 9, tzinfo=UTC)
    try:
        with clock.frozen(NOW):
            a, b = committed.session(), committed.session()
            try:
                times = service.service_times(clinic.cleaning)
                blocked = times.blocked(start)
                a.add(Appointment(
                    org_id=org.id, patient_id=first.id, practitioner_id=clinic.vega.id, service_id=clinic.cleaning.id,
                    location_id=clinic.location.id, start_at=start, end_at=start + times.duration,
                    blocked_from=blocked[0], blocked_until=blocked[1], status="booked", mode="in_person",
                    source="api",
                ))
                await a.flush()  # flushed, not committed: invisible to b, and no calendar lock taken
                racing = asyncio.ensure_future(
                    book(b, who, clinic, second.id, start + timedelta(minutes=15))
                )
                assert await _waiting_lock(committed) == "transactionid", "b should wait on a's uncommitted row"
                assert not racing.done()
                await a.commit()
                with pytest.raises(Conflict) as err:
                    await racing
                assert err.value.code == "slot_taken"
            finally:
                await a.close()
                await b.close()
    finally:
        await _cleanup_reminder_jobs(committed, org.id)


@pytest.mark.slow
async def test_overlapping_bookings_in_open_transactions_wait_for_the_calendar_lock_and_never_deadlock(
    committed,
) -> None:  # type: ignore[no-untyped-def]
    """A books X, B books Y overlapping X, then A books Z overlapping Y. Without a lock B would wait on
    A's row and A on B's: a deadlock (what made 200 concurrent bookings answer 500). With the
    practitioner's calendar lock B waits before its check, A books Z at once, and once A commits B
    sees X and answers slot_taken. PostgreSQL detects no deadlock."""
    from prm.core.errors import Conflict

    from .test_booking_contention import _deadlocks

    org, _ = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        p1, p2 = await make_patient(s, org.id, given="A"), await make_patient(s, org.id, given="B")
        await s.commit()
    who = Principal.system(org.id)

    deadlocks_before = await _deadlocks(committed)
    try:
        with clock.frozen(NOW):
            a, b = committed.session(), committed.session()
            try:
                # cleaning blocks [start - 5 min, end + 10 min): X 10:00 blocks 09:55-10:40
                await book(a, who, clinic, p1.id, at(24, 10, 0))
                # Y 10:30 (blocks 10:25-11:10) overlaps X: B waits, on the calendar lock
                racing = asyncio.ensure_future(book(b, who, clinic, p2.id, at(24, 10, 30)))
                assert await _waiting_lock(committed) == "advisory", racing.done() and racing.exception()
                # Z 11:00 (blocks 10:55-11:40) overlaps Y but not X: A goes on, nothing to wait for
                z = await book(a, who, clinic, p1.id, at(24, 11, 0))
                assert z.status == "booked"
                await a.commit()
                with pytest.raises(Conflict) as err:
                    await racing
                assert err.value.code == "slot_taken"
            finally:
                await a.close()
                await b.close()
            async with committed.session() as s:
                held = await s.scalar(
                    select(func.count())
                    .select_from(Appointment)
                    .where(Appointment.org_id == org.id, Appointment.practitioner_id == clinic.vega.id)
                )
                assert held == 2
        assert await _deadlocks(committed) == deadlocks_before
    finally:
        await _cleanup_reminder_jobs(committed, org.id)
