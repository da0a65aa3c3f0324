"""The booking's cached reference data (`prm.appointments.reference`) and its one-statement write
(`prm.core.batch`), with committed transactions: every change to services, practitioners, rules,
exceptions, locations and the organisation's settings is seen by the next booking, whoever made it;
an uncommitted change never reaches other requests; a refused booking writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from psycopg import _queries as psycopg_queries
from sqlalchemy import event, func, select, text

from prm.appointments import reference
from prm.appointments import service as appointments
from prm.appointments.models import AppointmentChange, AppointmentReminder
from prm.appointments.schemas import ExceptionCreate
from prm.core import clock
from prm.core.audit import AuditEntry
from prm.core.events import EventRecord

from .conftest import NOW, build_clinic, make_patient
from .support import at
from .test_double_booking import _cleanup_reminder_jobs

pytestmark = pytest.mark.slow


@pytest.fixture
async def setup(committed: Any) -> AsyncIterator[tuple[Any, Any, Any, list[uuid.UUID]]]:
    """A committed clinic, an admin client and 12 patients; afterwards its jobs are cancelled (they
    must not run in a later test that runs every due job) and its EHR connection removed."""
    org, key = await committed.org()
    async with committed.session() as s:
        clinic = await build_clinic(s, org.id)
        patients = [(await make_patient(s, org.id, given=f"P{i}")).id for i in range(12)]
        await s.commit()
    yield org, committed.client(key), clinic, patients
    await _cleanup_reminder_jobs(committed, org.id)
    async with committed.session() as s:
        await s.execute(text("DELETE FROM fhir_ehr_connections WHERE org_id = :o"), {"o": org.id})
        await s.commit()


def _body(clinic: Any, patient: uuid.UUID, start: Any, **extra: Any) -> dict[str, Any]:
    return {"patient_id": str(patient), "service_id": str(clinic.cleaning.id),
            "practitioner_id": str(clinic.vega.id), "start_at": start.isoformat(), **extra}


async def test_every_reference_change_reaches_the_next_booking(committed: Any, setup: Any) -> None:
    _, client, clinic, patients = setup
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with clock.frozen(NOW):
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 9)))
        assert r.status_code == 201, r.text
        # (the key's first use wrote its last-used time, so that booking kept what it read to itself)
        r = await client.post("/appointments", json=_body(clinic, patients[7], at(24, 9), practitioner_id=str(
            clinic.ruiz.id)))
        assert r.status_code == 201, r.text
        # warm: the next booking is ONE statement (locks, version and patient checks, and the write)
        event.listen(committed.db.engine.sync_engine, "before_cursor_execute", count)
        try:
            r = await client.post("/appointments", json=_body(clinic, patients[1], at(24, 10)))
        finally:
            event.remove(committed.db.engine.sync_engine, "before_cursor_execute", count)
        assert r.status_code == 201, r.text
        assert len(statements) == 1, statements
        # its answer is built from the values the statement wrote (not read back): the row as stored
        stored = await client.get(f"/appointments/{r.json()['id']}")
        assert stored.status_code == 200, stored.text
        assert {k: stored.json()[k] for k in r.json()} == r.json()
        # and psycopg kept the statement's parsed form (it is longer than psycopg's own 4 kB limit)
        assert len(statements[0].encode()) > 4096
        hits = psycopg_queries._query2pg.cache_info().hits
        r = await client.post("/appointments", json=_body(clinic, patients[9], at(24, 12)))
        assert r.status_code == 201, r.text
        assert psycopg_queries._query2pg.cache_info().hits > hits

        # time off, through the API
        r = await client.post(f"/practitioners/{clinic.vega.id}/availability/exceptions", json={
            "kind": "time_off", "start_at": at(24, 11).isoformat(), "end_at": at(24, 12).isoformat()})
        assert r.status_code == 201, r.text
        r = await client.post("/appointments", json=_body(clinic, patients[2], at(24, 11)))
        assert r.status_code == 422 and r.json()["code"] == "outside_availability", r.text

        # a longer service
        r = await client.patch(f"/services/{clinic.cleaning.id}", json={"duration_minutes": 45})
        assert r.status_code == 200, r.text
        r = await client.post("/appointments", json=_body(clinic, patients[3], at(25, 9)))
        assert r.status_code == 201 and r.json()["end_at"] == at(25, 9, 45).isoformat().replace("+00:00", "Z")

        # Dr Vega no longer offers it
        r = await client.patch(f"/services/{clinic.cleaning.id}", json={"practitioner_ids": [str(clinic.ruiz.id)]})
        assert r.status_code == 200, r.text
        r = await client.post("/appointments", json=_body(clinic, patients[4], at(25, 11)))
        assert r.status_code == 422 and r.json()["code"] == "service_not_offered", r.text

        # a change another process makes by hand (no API, no ORM): the trigger bumps the version
        async with committed.session() as s:
            await s.execute(text("UPDATE services SET is_active = false WHERE id = :id"), {"id": clinic.cleaning.id})
            await s.commit()
        r = await client.post("/appointments", json=_body(clinic, patients[5], at(25, 11), practitioner_id=str(
            clinic.ruiz.id)))
        assert r.status_code == 422 and r.json()["code"] == "unknown_service", r.text
        async with committed.session() as s:
            await s.execute(text("UPDATE services SET is_active = true WHERE id = :id"), {"id": clinic.cleaning.id})
            await s.execute(text("DELETE FROM availability_rules WHERE practitioner_id = :p AND weekday = 3"),
                            {"p": clinic.ruiz.id})
            await s.commit()
        r = await client.post("/appointments", json=_body(clinic, patients[5], at(26, 10), practitioner_id=str(
            clinic.ruiz.id)))  # Thursday: no rule left
        assert r.status_code == 422 and r.json()["code"] == "outside_availability", r.text

        # the organisation's reminder offsets
        r = await client.patch("/admin/organisation/settings", json={"reminder_offsets_minutes": "2h"})
        assert r.status_code == 200, r.text
        r = await client.post("/appointments", json=_body(clinic, patients[6], at(27, 10), practitioner_id=str(
            clinic.ruiz.id)))
        assert r.status_code == 201, r.text
        async with committed.session() as s:
            offsets = list(await s.scalars(select(AppointmentReminder.offset).where(
                AppointmentReminder.appointment_id == uuid.UUID(r.json()["id"]))))
        assert offsets == ["2h"]


async def test_slots_follow_every_change_too(committed: Any, setup: Any) -> None:
    _, client, clinic, _ = setup
    query = {"service_id": str(clinic.cleaning.id), "practitioner_id": str(clinic.vega.id),
             "start_date": "2026-03-24", "end_date": "2026-03-24"}

    async def starts() -> list[str]:
        r = await client.get("/slots", params=query)
        assert r.status_code == 200, r.text
        return [s["start_at"] for s in r.json()]

    with clock.frozen(NOW):
        before = await starts()
        assert "2026-03-24T10:00:00Z" in before  # 11:00 in Madrid
        assert await starts() == before  # from the cached copy now
        async with committed.session() as s:  # another process, by hand
            await s.execute(text(
                "INSERT INTO availability_exceptions (id, org_id, practitioner_id, kind, start_at, end_at, reason) "
                "VALUES (gen_random_uuid(), :o, :p, 'time_off', :a, :b, '')"),
                {"o": clinic.org_id, "p": clinic.vega.id, "a": at(24, 11), "b": at(24, 12)})
            await s.commit()
        after = await starts()
        assert "2026-03-24T10:00:00Z" not in after and len(after) < len(before)
        r = await client.get("/slots", params={**query, "practitioner_id": str(uuid.uuid4())})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "practitioner_id", r.text


async def test_an_uncommitted_change_never_reaches_other_requests(committed: Any, setup: Any) -> None:
    org, client, clinic, patients = setup
    with clock.frozen(NOW):
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 9)))
        assert r.status_code == 201, r.text
        # a transaction adds time off at 11:00 and books in it: it reads its own uncommitted data...
        async with committed.session() as s:
            await appointments.add_exception(s, org.id, clinic.vega.id, ExceptionCreate(
                kind="time_off", start_at=at(24, 11), end_at=at(24, 12)))
            who = _principal(org)
            with pytest.raises(Exception) as refused:
                await appointments.book(s, who, {"patient_id": patients[1], "service_id": clinic.cleaning.id,
                                                 "practitioner_id": clinic.vega.id, "start_at": at(24, 11)})
            assert getattr(refused.value, "code", None) == "outside_availability"
            await s.rollback()  # ...and rolls back
        # ...then another change commits and takes the version number the rolled-back one had seen
        async with committed.session() as s:
            await appointments.add_exception(s, org.id, clinic.vega.id, ExceptionCreate(
                kind="time_off", start_at=at(24, 12), end_at=at(24, 13)))
            await s.commit()
        # the rolled-back time off is nowhere; the committed one is seen
        r = await client.post("/appointments", json=_body(clinic, patients[2], at(24, 11)))
        assert r.status_code == 201, r.text
        r = await client.post("/appointments", json=_body(clinic, patients[3], at(24, 12)))
        assert r.status_code == 422 and r.json()["code"] == "outside_availability", r.text


async def test_a_refused_booking_writes_nothing(committed: Any, setup: Any) -> None:
    org, client, clinic, patients = setup

    async def counts() -> list[int]:
        async with committed.session() as s:
            return [
                await s.scalar(select(func.count()).select_from(model).where(model.org_id == org.id))
                for model in (AppointmentChange, AppointmentReminder, AuditEntry, EventRecord)
            ] + [await s.scalar(text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'org_id' = :o"),
                                {"o": str(org.id)})]

    with clock.frozen(NOW):
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 10)))
        assert r.status_code == 201, r.text
        before = await counts()
        assert before[0] >= 1 and before[1] >= 1 and before[4] >= 1
        # the same practitioner's time, within the buffers: refused by the exclusion constraint
        r = await client.post("/appointments", json=_body(clinic, patients[1], at(24, 10, 30)))
        assert r.status_code == 409 and r.json()["code"] == "slot_taken", r.text
        # the same patient elsewhere at an overlapping time
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 10, 15),
                                                           practitioner_id=str(clinic.ruiz.id)))
        assert r.status_code == 409 and r.json()["code"] == "patient_overlap", r.text
        assert await counts() == before


async def test_the_batch_never_cuts_a_long_value(committed: Any) -> None:
    """Values are cast to unbounded types: a string too long for its column is refused, not cut."""
    from sqlalchemy.exc import DBAPIError

    from prm.core.batch import Batch

    org, _ = await committed.org()
    async with committed.session() as s:
        batch = Batch()
        batch.insert(AuditEntry, {"org_id": org.id, "actor_kind": "system", "actor_role": "system",
                                  "action": "x" * 33, "resource_type": "test"})
        with pytest.raises(DBAPIError, match="too long"):
            await batch.execute(s)


def _principal(org: Any) -> Any:
    from prm.core.auth import Principal

    return Principal.system(org.id)


def test_cache_drops_the_least_recently_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reference, "MAX_ORGANISATIONS", 2)
    reference.forget()
    copies = [reference.Reference(uuid.uuid4(), 1, NOW - timedelta(days=3), {}, {}, {}, None)  # type: ignore[arg-type]
              for _ in range(3)]
    for copy in copies:
        reference._store(copy)
    assert list(reference._cache) == [copies[1].org_id, copies[2].org_id]
    reference.forget()


async def test_a_booking_queues_only_deliveries_that_can_have_work(committed: Any, setup: Any) -> None:
    """No EHR connection, no journey, no webhook endpoint: the booking's event gets only the patient's
    confirmation; an enabled EHR connection and a live journey make theirs queued too."""
    org, client, clinic, patients = setup

    async def deliveries(appointment_id: str) -> list[str]:
        async with committed.session() as s:
            event_id = await s.scalar(select(EventRecord.id).where(
                EventRecord.org_id == org.id, EventRecord.payload["appointment_id"].astext == appointment_id))
            return sorted(await s.scalars(text(
                "SELECT args->>'subscriber' FROM procrastinate_jobs WHERE task_name = 'events.deliver' "
                "AND args->>'event_id' = :e"), {"e": str(event_id)}))

    with clock.frozen(NOW):
        r = await client.post("/appointments", json=_body(clinic, patients[0], at(24, 9)))
        assert r.status_code == 201, r.text
        assert await deliveries(r.json()["id"]) == ["notifications.appointment_booked"]
        async with committed.session() as s:
            await s.execute(text(
                "INSERT INTO journeys (id, org_id, key, name, entry_policy, draft, active_version, latest_version) "
                "VALUES (gen_random_uuid(), :o, 'j', 'J', 'once_per_patient', '{}', 1, 1)"), {"o": org.id})
            await s.execute(text(
                "INSERT INTO fhir_ehr_connections (id, org_id, name, base_url, server_family, auth, scope, "
                "signing_alg, key_id, bearer_token, enabled) VALUES (gen_random_uuid(), :o, 'EHR', "
                "'https://ehr.example/fhir', 'transaction', 'bearer', 'system/*.write', 'ES384', :k, 't', true)"),
                {"o": org.id, "k": uuid.uuid4().hex})
            await s.commit()
        r = await client.post("/appointments", json=_body(clinic, patients[1], at(24, 10)))
        assert r.status_code == 201, r.text
        assert await deliveries(r.json()["id"]) == [
            "fhir.sync_on_appointment_booked", "journeys.react", "notifications.appointment_booked"]
