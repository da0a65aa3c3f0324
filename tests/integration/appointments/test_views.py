"""Agenda, calendar invites, service matching, permissions and the patient-merge hook."""

from __future__ import annotations

import re
from datetime import date

import httpx
import pytest
from icalendar import Calendar
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service
from prm.appointments.models import Appointment
from prm.core import clock
from prm.core.audit import AuditEntry
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.patients.registry import merge_handlers

from .conftest import NOW, Clinic, make_patient
from .support import at, book, events_of, principal_for


async def test_agenda_for_a_day_and_a_week(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    who = principal_for(clinic)
    with clock.frozen(NOW):
        for day, hour in ((24, 9), (24, 11), (26, 10)):
            patient = await make_patient(session, clinic.org_id, given=f"P{day}{hour}")
            await book(session, who, clinic, patient.id, at(day, hour))
        r = await client.get(f"/practitioners/{clinic.vega.id}/agenda", params={"start_date": "2026-03-24"})
        assert r.status_code == 200, r.text
        day = r.json()
        assert day["timezone"] == "Europe/Madrid" and day["end_date"] == "2026-03-24"
        assert [e["local_start"] for e in day["entries"]] == [
            "2026-03-24T09:00:00+01:00",
            "2026-03-24T11:00:00+01:00",
        ]
        assert day["entries"][0]["service_name"] == "Cleaning" and day["entries"][0]["location_name"] == "Centro"
        week = (
            await client.get(f"/practitioners/{clinic.vega.id}/agenda", params={"start_date": "2026-03-23", "days": 7})
        ).json()
        assert len(week["entries"]) == 3 and week["end_date"] == "2026-03-29"
        assert (
            await client.get(f"/practitioners/{clinic.ruiz.id}/agenda", params={"start_date": "2026-03-23", "days": 7})
        ).json()["entries"] == []
        listed = (await client.get("/appointments", params={"practitioner_id": str(clinic.vega.id)})).json()
        assert listed["total"] == 3 and next(a["start_at"] for a in listed["items"]) == "2026-03-24T08:00:00Z"
        assert (await client.get("/appointments", params={"status": "cancelled"})).json()["total"] == 0
        # each appointment shown in an agenda or a list is an audited read of patient data
        reads = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.org_id == clinic.org_id,
                AuditEntry.action == "read",
                AuditEntry.resource_type == "appointment",
            )
        )
        assert reads == 8


async def test_calendar_invite(session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient) -> None:
    who = principal_for(clinic)
    patient = await make_patient(session, clinic.org_id)
    with clock.frozen(NOW):
        appt = await book(session, who, clinic, patient.id, at(24, 10))
        r = await client.get(f"/appointments/{appt.id}/invite.ics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/calendar")
        event = Calendar.from_ical(r.content).walk("VEVENT")[0]
        assert event.decoded("dtstart") == at(24, 10) and event.decoded("dtend") == at(24, 10, 30)
        assert str(event["summary"]) == "Cleaning with Dr Vega" and int(event["sequence"]) == 0
        await service.reschedule(session, who, appt.id, start_at=at(25, 10))
        event = Calendar.from_ical((await client.get(f"/appointments/{appt.id}/invite.ics")).content).walk("VEVENT")[0]
        assert int(event["sequence"]) == 1 and event.decoded("dtstart") == at(25, 10)


async def test_services_matching_and_setup_api(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, make_client
) -> None:  # type: ignore[no-untyped-def]
    assert [s.name for s in await service.list_services(session, clinic.org_id)] == ["Check-up", "Cleaning"]
    assert [s.name for s in await service.find_services(session, clinic.org_id, "I need a cleaning")] == ["Cleaning"]
    assert [s.name for s in await service.find_services(session, clinic.org_id, "LIMPIEZA dental")] == ["Cleaning"]
    assert [s.name for s in await service.find_services(session, clinic.org_id, "check")] == ["Check-up"]
    assert await service.find_services(session, clinic.org_id, "  ") == []
    r = await client.get("/services", params={"q": "hygiene"})
    assert [s["name"] for s in r.json()] == ["Cleaning"]
    assert r.json()[0]["keywords"] == ["limpieza", "hygiene"]
    # setup API round trip
    r = await client.post("/locations", json={"name": "Norte", "timezone": "America/New_York"})
    assert r.status_code == 201
    loc_id = r.json()["id"]
    assert (await client.patch(f"/locations/{loc_id}", json={"address": "5th Ave"})).json()["address"] == "5th Ave"
    r = await client.post("/practitioners", json={"name": "Dr Kim", "timezone": "America/New_York"})
    kim = r.json()["id"]
    assert (await client.patch(f"/practitioners/{kim}", json={"title": "DDS"})).json()["title"] == "DDS"
    r = await client.post("/practitioners", json={"name": "Dr X", "user_id": "00000000-0000-0000-0000-000000000000"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "user_id"
    r = await client.patch(f"/services/{clinic.cleaning.id}", json={"practitioner_ids": [kim], "duration_minutes": 45})
    assert r.status_code == 200 and r.json()["practitioner_ids"] == [kim] and r.json()["duration_minutes"] == 45
    r = await client.post("/services", json={"name": "Bad", "duration_minutes": 30, "practitioner_ids": [loc_id]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "practitioner_ids.0"
    assert len((await client.get("/practitioners")).json()) == 3
    assert len((await client.get("/locations")).json()) == 2
    assert (await client.get(f"/services/{clinic.checkup.id}")).json()["mode"] == "video"
    # roles: a support agent reads the schedule but cannot book or change the setup
    agent = await make_client("support_agent")
    assert (await agent.get("/services")).status_code == 200
    assert (await agent.post("/locations", json={"name": "N", "timezone": "UTC"})).status_code == 403
    assert (await agent.post("/appointments", json={})).status_code == 403


async def test_patient_merge_moves_appointments(session: AsyncSession, clinic: Clinic) -> None:
    who = principal_for(clinic)
    survivor = await make_patient(session, clinic.org_id, given="Ana")
    duplicate = await make_patient(session, clinic.org_id, given="Ana M.")
    with clock.frozen(NOW):
        kept = await book(session, who, clinic, survivor.id, at(24, 10))
        twin = await book(session, who, clinic, duplicate.id, at(24, 10), practitioner=clinic.ruiz)
        other = await book(session, who, clinic, duplicate.id, at(26, 10), practitioner=clinic.ruiz)
        moved = await merge_handlers()["appointments"](session, clinic.org_id, duplicate.id, survivor.id)
    assert moved == 2
    rows = {a.id: a for a in await session.scalars(select(Appointment).where(Appointment.patient_id == survivor.id))}
    assert set(rows) == {kept.id, twin.id, other.id}
    assert rows[twin.id].status == "cancelled" and "patient merge" in (rows[twin.id].cancel_reason or "")
    # the patient is not told about the cancelled twin (notifications reads `notify_patient`)
    (cancelled,) = await events_of(session, clinic.org_id, "appointment.cancelled")
    assert cancelled["appointment_id"] == str(twin.id) and cancelled["notify_patient"] is False
    assert rows[other.id].status == "booked"


async def test_public_functions_as_a_chat_bot_uses_them(session: AsyncSession, clinic: Clinic) -> None:
    """find a service by a word, list slots, book the first with a plain dict, move it, cancel it."""

    import pytest

    from prm.core.auth import Principal
    from prm.core.errors import ValidationFailed

    bot = Principal.system(clinic.org_id)
    patient = await make_patient(session, clinic.org_id)
    with clock.frozen(NOW):
        (cleaning,) = await service.find_services(session, clinic.org_id, "can I get a cleaning?")
        free = await service.available_slots(
            session,
            clinic.org_id,
            service_id=cleaning.id,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 27),
            limit=3,
        )
        assert len(free) == 3 and free[0].local_start.isoformat() == "2026-03-24T09:00:00+01:00"
        appt = await service.book(
            session,
            bot,
            {
                "patient_id": patient.id,
                "service_id": cleaning.id,
                "practitioner_id": free[0].practitioner_id,
                "start_at": free[0].start_at,
                "source": "whatsapp",
            },
        )
        assert appt.source == "whatsapp" and appt.booked_by == "system"
        with pytest.raises(ValidationFailed) as err:
            await service.book(session, bot, {"patient_id": patient.id, "start_at": "soon"})
        assert {e["field"] for e in err.value.errors or []} >= {"service_id", "start_at"}
        moved = await service.reschedule(session, bot, appt.id, start_at=free[2].start_at)
        assert moved.start_at == free[2].start_at
        assert [a.id for a in await service.upcoming_for_patient(
            session,
            Principal.system(clinic.org_id),
            patient.id,
        )] == [appt.id]
        await service.cancel(session, bot, appt.id, reason="patient wrote 'cancel'")
        assert await service.upcoming_for_patient(session, Principal.system(clinic.org_id), patient.id) == []


async def test_inactive_practitioner_or_location_offers_nothing(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient
) -> None:

    patient = await make_patient(session, clinic.org_id)
    org_id, patient_id = clinic.org_id, patient.id
    vega, ruiz, cleaning, location = clinic.vega.id, clinic.ruiz.id, clinic.cleaning.id, clinic.location.id
    with clock.frozen(NOW):
        r = await client.patch(f"/practitioners/{ruiz}", json={"is_active": False})
        assert r.status_code == 200 and r.json()["is_active"] is False
        session.expire_all()  # the API wrote through its own session; drop this one's stale copies
        found = await service.available_slots(
            session,
            org_id,
            service_id=cleaning,
            start_date=date(2026, 3, 24),
            end_date=date(2026, 3, 24),
        )
        assert found and {s.practitioner_id for s in found} == {vega}
        r = await client.post(
            "/appointments",
            json={
                "patient_id": str(patient_id),
                "service_id": str(cleaning),
                "practitioner_id": str(ruiz),
                "start_at": "2026-03-24T10:00:00+01:00",
            },
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "practitioner_id"
        assert (await client.patch(f"/locations/{location}", json={"is_active": False})).status_code == 200
        session.expire_all()
        assert (
            await service.available_slots(
                session,
                org_id,
                service_id=cleaning,
                start_date=date(2026, 3, 24),
                end_date=date(2026, 3, 24),
            )
            == []
        )
        r = await client.patch(f"/services/{cleaning}", json={"is_active": False})
        assert r.status_code == 200
        r = await client.get(
            "/slots",
            params={"service_id": str(cleaning), "start_date": "2026-03-24", "end_date": "2026-03-24"},
        )
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == "service_id"
        assert [s["name"] for s in (await client.get("/services", params={"include_inactive": True})).json()] == [
            "Check-up",
            "Cleaning",
        ]


# --- bad input found by fuzzing (schemathesis): 422 naming the field, nothing written ------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/locations/{location}", {"name": "X", "timezone": None}, "timezone"),
        ("/locations/{location}", {"is_active": None}, "is_active"),
        ("/locations/{location}", {"timezone": "America"}, "timezone"),  # a folder of zones: OSError
        ("/practitioners/{practitioner}", {"timezone": "E" * 300}, "timezone"),  # name too long: OSError
        ("/practitioners/{practitioner}", {"title": None}, "title"),
        ("/practitioners/{practitioner}", {"name": None}, "name"),
        ("/services/{service}", {"description": None}, "description"),
        ("/services/{service}", {"keywords": None}, "keywords"),
        ("/services/{service}", {"keywords": ["k" * 101]}, "keywords.0"),
        ("/services/{service}", {"min_notice_minutes": 2**31}, "min_notice_minutes"),
    ],
)
async def test_patch_with_null_or_oversized_values_is_422_naming_the_field(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, path: str, body: dict, field: str
) -> None:
    url = path.format(location=clinic.location.id, practitioner=clinic.vega.id, service=clinic.cleaning.id)
    before = (await client.get(url)).json()
    r = await client.patch(url, json=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get(url)).json() == before


async def test_service_with_too_long_keyword_is_422(clinic: Clinic, client: httpx.AsyncClient) -> None:
    r = await client.post("/services", json={"name": "Long", "duration_minutes": 30, "keywords": ["k" * 101]})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "keywords.0"


async def test_availability_rule_times_match_the_documented_schema(
    clinic: Clinic, client: httpx.AsyncClient
) -> None:
    rules = (await client.get(f"/practitioners/{clinic.vega.id}/availability/rules")).json()
    doc = (await client.get("/openapi.json")).json()
    pattern = re.compile(doc["components"]["schemas"]["RuleRead"]["properties"]["start_time"]["pattern"])
    assert rules and all(pattern.match(r["start_time"]) and pattern.match(r["end_time"]) for r in rules)


@pytest.mark.parametrize(
    ("times", "field"),
    [({"start_time": "09:00:00", "end_time": 0}, "end_time"), ({"start_time": "09:00+02:00", "end_time": "10:00"},
                                                                "start_time")],
)
async def test_availability_rule_with_a_number_or_zoned_time_is_422(
    clinic: Clinic, client: httpx.AsyncClient, times: dict, field: str
) -> None:
    url = f"/practitioners/{clinic.vega.id}/availability/rules"
    before = (await client.get(url)).json()
    r = await client.post(url, json={"location_id": str(clinic.location.id), "weekday": 0, **times})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get(url)).json() == before


async def test_patient_appointment_history(
    session: AsyncSession, clinic: Clinic, client: httpx.AsyncClient, other_org: Organisation, make_client
) -> None:  # type: ignore[no-untyped-def]
    patient = await make_patient(session, clinic.org_id)
    who = principal_for(clinic)
    with clock.frozen(NOW):
        made = []
        for day, practitioner in ((24, clinic.vega), (25, clinic.ruiz), (26, clinic.vega)):
            made.append(
                await book(session, who, clinic, patient.id, at(day, 11), practitioner=practitioner)
            )
        await service.cancel(session, who, made[1].id, reason="clash")
        r = await client.get(f"/patients/{patient.id}/appointments")
        assert r.status_code == 200
        page = r.json()
        assert page["total"] == 3
        assert [a["id"] for a in page["items"]] == [str(made[2].id), str(made[1].id), str(made[0].id)]
        assert [a["status"] for a in page["items"]] == ["booked", "cancelled", "booked"]
        audited = await session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.patient_id == patient.id, AuditEntry.resource_type == "patient_appointments")
        )
        assert audited == 1
        # upcoming: only time-holding, not yet started, soonest first
        upcoming = await service.upcoming_for_patient(session, Principal.system(clinic.org_id), patient.id)
        assert [a.id for a in upcoming] == [made[0].id, made[2].id]
    with clock.frozen(at(25, 12)):
        assert [a.id for a in await service.upcoming_for_patient(
            session,
            Principal.system(clinic.org_id),
            patient.id,
        )] == [made[2].id]
    # the patient's timeline shows the bookings and the cancellation; other orgs get a 404
    from prm.patients.registry import timeline_sources

    entries = await timeline_sources()["appointments"](session, clinic.org_id, patient.id, None, 10)
    assert sorted(e.kind for e in entries) == ["appointment.booked"] * 3 + ["appointment.cancelled"]
    assert all(e.source == "appointments" for e in entries)
    assert "Cleaning with Dr Ruiz" in next(e.summary for e in entries if e.kind == "appointment.cancelled")
    stranger = await make_client("admin", for_org=other_org)
    assert (await stranger.get(f"/patients/{patient.id}/appointments")).status_code == 404
    assert (await stranger.get(f"/appointments/{made[0].id}")).status_code == 404
