"""The plan's intake tests (seed-test-and-deploy-plan.md, module 13), through the API and the services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select

from prm.core import clock, jobs
from prm.core.audit import AuditEntry
from prm.intake.models import IntakeRecord, IntakeSummary
from prm.patients import service as patients
from prm.tickets.models import Ticket
from tests.fixtures.factories import make_patient, make_user, principal
from tests.integration.intake.support import PROBLEM, QUESTIONNAIRE, events_of, ok

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


async def _session(client: httpx.AsyncClient, **body) -> dict:
    return await ok(await client.post("/intake/sessions", json={"source": "web_form", **body}), 201)


async def test_create_intake_session(session, org, client: httpx.AsyncClient) -> None:
    with clock.frozen(T0):
        await ok(await client.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
        r = await client.post("/intake/sessions", json={
            "source": "web_form", "questionnaire_key": "new-patient", "language": "es",
            "contact": {"given_name": "Lucía", "family_name": "Martín", "phone": "+34612345678"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["status"], body["link_status"], body["version"], body["questionnaire_version"]) == (
        "open", "unlinked", 1, 1)
    assert r.headers["ETag"] == '"1"' and r.headers["Location"] == f"/intake/sessions/{body['id']}"
    assert body["contact"]["given_name"] == "Lucía" and body["summary_status"] == "none"
    [started] = await events_of(session, org.id, "intake.started")
    assert started.payload["session_id"] == body["id"] and "Lucía" not in str(started.payload)
    assert await session.scalar(select(AuditEntry.action).where(AuditEntry.resource_id == body["id"])) == "create"
    # an external reference makes creation idempotent
    first = await client.post("/intake/sessions", json={"source": "staff", "external_ref": "form-77"})
    again = await client.post("/intake/sessions", json={"source": "staff", "external_ref": "form-77"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    # unknown questionnaire / another organisation's practitioner: 422 naming the field
    bad = await client.post("/intake/sessions", json={"source": "web_form", "questionnaire_key": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "questionnaire_key"
    nobody = await client.post("/intake/sessions", json={"source": "voice",
                                                          "assigned_practitioner_id": str(uuid.uuid4())})
    assert nobody.status_code == 422 and nobody.json()["errors"][0]["field"] == "assigned_practitioner_id"
    wrong = await client.post("/intake/sessions", json={"source": "fax"})
    assert wrong.status_code == 422


async def test_upsert_intake_records(session, org, client: httpx.AsyncClient) -> None:
    s = await _session(client)
    base = f"/intake/sessions/{s['id']}/records"
    r = await client.post(base, json={"records": [
        {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Cough for a week"}},
        {"client_item_id": "sym-1", "type": "symptom",
         "data": {"name": "cough", "severity": "moderate", "duration_days": 7, "onset_date": "2026-11-23"}},
        {"client_item_id": "med-1", "type": "medication", "data": {"name": "Ibuprofen", "dose": "400 mg",
                                                                   "frequency": "every 8 hours"}},
        {"client_item_id": "alg-1", "type": "allergy", "data": {"substance": "Penicillin", "reaction": "rash",
                                                                "severity": "severe"}},
        {"client_item_id": "bp", "type": "vital", "data": {"kind": "blood_pressure", "systolic": 128,
                                                           "diastolic": 82}},
        {"client_item_id": "ins", "type": "insurance", "data": {"payer": "Sanitas", "member_number": "A-1"}},
    ]})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"] == '"2"'
    stored = {x["client_item_id"]: x for x in r.json()}
    assert stored["bp"]["data"] == {"kind": "blood_pressure", "systolic": 128.0, "diastolic": 82.0, "unit": "mm[Hg]"}
    assert stored["med-1"]["data"]["status"] == "active" and stored["sym-1"]["revision"] == 1
    # one bad field refuses the whole batch, naming it; nothing is written
    bad = await client.post(base, json={"records": [
        {"client_item_id": "n1", "type": "note", "data": {"text": "ok"}},
        {"client_item_id": "sym-2", "type": "symptom", "data": {"name": "fever", "severity": "terrible"}},
        {"client_item_id": "v2", "type": "vital", "data": {"kind": "heart_rate", "value": 70, "unit": "kg"}},
    ]})
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert [e["field"] for e in bad.json()["errors"]] == ["records.1.data.severity", "records.2.data"]
    assert await session.scalar(select(func.count()).select_from(IntakeRecord)
                                .where(IntakeRecord.session_id == uuid.UUID(s["id"]))) == 6
    # soft delete: gone from the session, kept in the table; deleting again is 404
    gone = await client.delete(f"{base}/med-1")
    assert gone.status_code == 204 and gone.headers["ETag"] == '"3"'
    detail = await ok(await client.get(f"/intake/sessions/{s['id']}"))
    assert "med-1" not in {x["client_item_id"] for x in detail["records"]} and detail["version"] == 3
    everything = await ok(await client.get(base, params={"include_deleted": True}))
    assert next(x for x in everything if x["client_item_id"] == "med-1")["deleted_at"] is not None
    assert (await client.delete(f"{base}/med-1")).status_code == 404
    # an item keeps its type
    clash = await client.put(f"{base}/cc", json={"type": "note", "data": {"text": "x"}})
    assert clash.status_code == 409 and clash.json()["code"] == "record_type_mismatch"


async def test_upsert_with_client_id(session, org, client: httpx.AsyncClient) -> None:
    s = await _session(client)
    url = f"/intake/sessions/{s['id']}/records/med-1"
    body = {"type": "medication", "data": {"name": "Metformin", "dose": "500 mg"}}
    first = await client.put(url, json=body)
    same = await client.put(url, json=body)
    changed = await client.put(url, json={"type": "medication", "data": {"name": "Metformin", "dose": "850 mg"}})
    assert (first.status_code, same.status_code, changed.status_code) == (201, 200, 200)
    assert first.json()["id"] == same.json()["id"] == changed.json()["id"]
    assert (first.json()["revision"], same.json()["revision"], changed.json()["revision"]) == (1, 1, 2)
    # the same data again is not a change: the session's version moved twice (create, change)
    assert (first.headers["ETag"], same.headers["ETag"], changed.headers["ETag"]) == ('"2"', '"2"', '"3"')
    rows = (await session.scalars(select(IntakeRecord).where(IntakeRecord.session_id == uuid.UUID(s["id"])))).all()
    assert len(rows) == 1 and rows[0].data["dose"] == "850 mg"
    # a deleted item comes back on upsert
    assert (await client.delete(url)).status_code == 204
    back = await client.put(url, json=body)
    assert back.status_code == 200 and back.json()["deleted_at"] is None and back.json()["revision"] == 4
    # If-Match: a stale version writes nothing
    stale = await client.put(url, json={"type": "medication", "data": {"name": "X"}}, headers={"If-Match": '"2"'})
    assert stale.status_code == 412 and stale.json()["code"] == "intake_session_version_mismatch"
    fresh = await client.put(url, json={"type": "medication", "data": {"name": "Y"}},
                             headers={"If-Match": back.headers["ETag"]})
    assert fresh.status_code == 200 and fresh.json()["data"]["name"] == "Y"
    bad_tag = await client.put(url, json=body, headers={"If-Match": "yesterday"})
    assert bad_tag.status_code == 422 and bad_tag.json()["errors"][0]["field"] == "If-Match"


async def test_link_patient(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org, given_name="Lucía", family_name="Martín", phone="+34612345678",
                                 birth_date="1987-04-12")
    s = await _session(client, contact={"given_name": "Lucia", "family_name": "Martin", "phone": "612 34 56 78",
                                        "birth_date": "1987-04-12"})
    url = f"/intake/sessions/{s['id']}/link"
    # matched (one likely patient) but no consent recorded: refused, nothing linked
    refused = await client.post(url, json={})
    assert refused.status_code == 409 and refused.json()["code"] == "intake_consent_required"
    linked = await ok(await client.post(url, json={"consent": {"granted": True, "method": "verbal"}}))
    assert (linked["link_status"], linked["patient_id"]) == ("linked", str(patient.id))
    assert linked["consent_recorded_at"] is not None
    decision = await patients.data_sharing_allows(session, org.id, patient.id, purpose="intake")
    assert decision.allowed and decision.basis == "record" and decision.source == "intake:verbal"
    [event] = await events_of(session, org.id, "intake.linked")
    assert event.payload["patient_id"] == str(patient.id)

    # two likely patients (twins sharing a phone and birth date): staff review, never a guess
    await make_patient(session, org, given_name="Pablo", family_name="Ruiz", phone="+34699000111",
                       birth_date="2001-02-03")
    await make_patient(session, org, given_name="Pablo", family_name="Ruiz", phone="+34699000111",
                       birth_date="2001-02-03", email="pablo2@example.org")
    twin = await _session(client, contact={"given_name": "Pablo", "family_name": "Ruiz", "phone": "+34699000111",
                                           "birth_date": "2001-02-03"})
    review = await ok(await client.post(f"/intake/sessions/{twin['id']}/link",
                                        json={"consent": {"granted": True}}))
    assert review["link_status"] == "needs_review" and review["patient_id"] is None
    assert len(review["match_candidates"]) == 2
    # staff pick one by id (its consent recorded with the link)
    chosen = review["match_candidates"][1]["patient_id"]
    picked = await ok(await client.post(f"/intake/sessions/{twin['id']}/link",
                                        json={"patient_id": chosen, "consent": {"granted": True}}))
    assert (picked["link_status"], picked["patient_id"], picked["match_candidates"]) == ("linked", chosen, [])
    # nobody alike: stays unlinked
    stranger = await _session(client, contact={"given_name": "Zoe", "family_name": "Quintana"})
    alone = await ok(await client.post(f"/intake/sessions/{stranger['id']}/link", json={}))
    assert alone["link_status"] == "unlinked"
    # an id of no patient here: 422 naming it
    unknown = await client.post(f"/intake/sessions/{stranger['id']}/link",
                                json={"patient_id": str(uuid.uuid4()), "consent": {"granted": True}})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "patient_id"


async def test_submit_session(session, org, client: httpx.AsyncClient) -> None:
    doctor_user = await make_user(session, org, role="practitioner")
    doctor = await ok(await client.post("/practitioners", json={"name": "Dr Vega", "timezone": "Europe/Madrid",
                                                                "user_id": str(doctor_user.id)}), 201)
    patient = await make_patient(session, org, phone="+34612000333")
    await patients.set_consent(session, principal(org), patient.id, channel=None, purpose="intake", granted=True,
                               source="form")
    with clock.frozen(T0) as c:
        await ok(await client.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
        s = await _session(client, questionnaire_key="new-patient", patient_id=str(patient.id),
                           assigned_practitioner_id=doctor["id"])
        assert s["link_status"] == "linked"
        base = f"/intake/sessions/{s['id']}"
        await ok(await client.put(f"{base}/records/a-reason", json={"type": "answer",
                                                                     "data": {"link_id": "reason", "value": "Cough"}}),
                 201)
        # answers are checked against the version: wrong type, unknown item, option not offered
        for data, field in (({"link_id": "smoker", "value": "yes"}, "data.value"),
                            ({"link_id": "nope", "value": 1}, "data.link_id"),
                            ({"link_id": "visit", "value": "phone"}, "data.value")):
            r = await client.put(f"{base}/records/x", json={"type": "answer", "data": data})
            assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, r.text
        incomplete = await client.post(f"{base}/submit")
        assert incomplete.status_code == 422 and incomplete.json()["code"] == "intake_incomplete"
        assert [e["field"] for e in incomplete.json()["errors"]] == ["records.smoker"]
        await ok(await client.put(f"{base}/records/a-smoker", json={"type": "answer",
                                                                     "data": {"link_id": "smoker", "value": False}}),
                 201)
        c.advance(timedelta(minutes=12))
        done = await client.post(f"{base}/submit", headers={"If-Match": '"4"'})
    assert done.status_code == 200, done.text
    body = done.json()
    assert (body["status"], body["summary_status"], body["version"]) == ("submitted", "pending", 5)
    ticket = await session.get(Ticket, uuid.UUID(body["ticket_id"]))
    assert ticket.assignee_id == doctor_user.id and ticket.category == "intake" and ticket.patient_id == patient.id
    [event] = await events_of(session, org.id, "intake.submitted")
    assert event.payload["session_id"] == s["id"] and event.payload["patient_id"] == str(patient.id)
    assert event.payload["record_counts"] == {"answer": 2} and event.payload["questionnaire_version"] == 1
    # frozen: no more writes
    frozen = await client.put(f"{base}/records/late", json={"type": "note", "data": {"text": "late"}})
    assert frozen.status_code == 409 and frozen.json()["code"] == "intake_session_frozen"
    assert (await client.post(f"{base}/submit")).status_code == 409


async def test_generate_intake_summary(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org, phone="+34612000444")
    await patients.set_consent(session, principal(org), patient.id, channel=None, purpose="intake", granted=True,
                               source="form")
    s = await _session(client, patient_id=str(patient.id))
    base = f"/intake/sessions/{s['id']}"
    await ok(await client.post(f"{base}/records", json={"records": [
        {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Chest pain when climbing stairs"}},
        {"client_item_id": "s1", "type": "symptom", "data": {"name": "breathlessness", "severity": "severe",
                                                             "duration_days": 3}},
        {"client_item_id": "m1", "type": "medication", "data": {"name": "Atorvastatin", "dose": "20 mg",
                                                                "frequency": "daily"}},
        {"client_item_id": "a1", "type": "allergy", "data": {"substance": "Penicillin", "reaction": "hives"}},
    ]}))
    missing = await client.get(f"{base}/summary")
    assert missing.status_code == 404 and missing.json()["code"] == "intake_summary_not_found"
    await ok(await client.post(f"{base}/submit"))
    report = await jobs.run_due(session, names=["intake.summarise"])
    assert report.ran >= 1
    summary = await ok(await client.get(f"{base}/summary"))
    assert summary["machine_generated"] is True and summary["generator"] == "offline" and not summary["edited"]
    content = summary["content"]
    assert content["chief_complaint"] == "Chest pain when climbing stairs"
    assert content["medications"] == ["Atorvastatin 20 mg daily"]
    assert content["allergies"] == ["Penicillin (hives)"]
    assert "chest pain" in content["red_flags"] and "severe symptom: breathlessness" in content["red_flags"]
    assert summary["text"].startswith("Reason: Chest pain when climbing stairs")
    assert (await ok(await client.get(base)))["summary_status"] == "ready"
    [event] = await events_of(session, org.id, "intake.summarised")
    assert event.payload["generator"] == "offline"
    # staff edit it: kept as theirs, and a regeneration is refused
    edited = await ok(await client.put(f"{base}/summary", json={"text": "Exertional chest pain; see today."}))
    assert edited["edited"] is True and edited["machine_generated"] is True
    assert edited["text"] == "Exertional chest pain; see today."
    again = await client.post(f"{base}/summary/regenerate")
    assert again.status_code == 409 and again.json()["code"] == "intake_summary_edited"
    stored = await session.get(IntakeSummary, uuid.UUID(s["id"]))
    await session.refresh(stored)
    assert stored.text == "Exertional chest pain; see today."


async def test_get_intake_statistics(session, org, client: httpx.AsyncClient) -> None:
    with clock.frozen(T0) as c:
        await ok(await client.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
        answered = [{"client_item_id": "r", "type": "answer", "data": {"link_id": "reason", "value": "x"}},
                    {"client_item_id": "s", "type": "answer", "data": {"link_id": "smoker", "value": True}}]
        for minutes in (10, 20, 30):
            s = await _session(client, questionnaire_key="new-patient")
            await ok(await client.post(f"/intake/sessions/{s['id']}/records", json={"records": answered}))
            c.advance(timedelta(minutes=minutes))
            await ok(await client.post(f"/intake/sessions/{s['id']}/submit"))
        await _session(client, questionnaire_key="new-patient")  # still open
        voice = await ok(await client.post("/intake/sessions", json={"source": "voice"}), 201)
        await ok(await client.post(f"/intake/sessions/{voice['id']}/cancel"))
        stats = await ok(await client.get("/intake/statistics", params={"from_date": "2026-11-30",
                                                                        "to_date": "2026-11-30"}))
        outside = await ok(await client.get("/intake/statistics", params={"from_date": "2026-11-01",
                                                                          "to_date": "2026-11-29"}))
        inverted = await client.get("/intake/statistics", params={"from_date": "2026-11-30", "to_date": "2026-11-01"})
    assert stats["total"] == 5 and stats["by_status"] == {"open": 1, "submitted": 3, "cancelled": 1}
    assert stats["by_source"] == {"web_form": 4, "whatsapp": 0, "voice": 1, "staff": 0}
    assert stats["completion_rate"] == 0.75 and stats["median_minutes_to_submit"] == 20.0
    [per_q, none_q] = stats["by_questionnaire"]
    assert (per_q["key"], per_q["total"], per_q["submitted"], per_q["completion_rate"]) == ("new-patient", 4, 3, 0.75)
    assert (none_q["key"], none_q["total"], none_q["completion_rate"]) == (None, 1, None)
    assert stats["interval"] == "week" and stats["by_period"] == [
        {"period_start": "2026-11-30", "total": 5, "submitted": 3, "completion_rate": 0.75,
         "median_minutes_to_submit": 20.0}]
    assert outside["total"] == 0 and outside["completion_rate"] is None and outside["by_period"] == []
    assert inverted.status_code == 422 and inverted.json()["errors"][0]["field"] == "from_date"


async def test_session_not_found(session, org, other_org, client: httpx.AsyncClient, make_client) -> None:
    theirs = await make_client("admin", for_org=other_org)
    s = await ok(await theirs.post("/intake/sessions", json={"source": "staff"}), 201)
    for method, path, body in (("GET", "", None), ("PATCH", "", {"language": "en"}),
                               ("PUT", "/records/x", {"type": "note", "data": {"text": "x"}}),
                               ("DELETE", "/records/x", None), ("POST", "/submit", None),
                               ("POST", "/link", {}), ("GET", "/summary", None)):
        for session_id in (s["id"], str(uuid.uuid4())):
            r = await client.request(method, f"/intake/sessions/{session_id}{path}", json=body)
            assert r.status_code == 404, (method, path, r.text)
            assert r.headers["content-type"] == PROBLEM and r.json()["code"] == "intake_session_not_found"
    # scopes: support agents may not read intake (clinical data)
    support = await make_client("support_agent")
    assert (await support.get("/intake/sessions")).status_code == 403
