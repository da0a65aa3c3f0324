"""Consent: defaults, opt-in/out with source and time, STOP/START, data sharing, history, API."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from prm.core import clock
from prm.core.auth import Principal
from prm.core.errors import NotFound, ValidationFailed
from prm.core.events import EventRecord
from prm.patients import service as patients
from prm.patients.models import Consent
from tests.fixtures.factories import make_patient, principal


async def test_defaults_allow_care_and_reminders_but_not_marketing(session, org):
    patient = await make_patient(session, org, phone="+34612000100")
    for channel in ("sms", "whatsapp", "email", "voice"):
        for purpose, allowed in (("care", True), ("reminders", True), ("marketing", False)):
            decision = await patients.consent_allows(session, org.id, patient.id, channel=channel,
                                                     purpose=purpose)
            assert decision.allowed is allowed
            assert decision.basis == "default"
            assert decision.reason == (None if allowed else "not_opted_in")


async def test_stop_and_start_keywords_flip_every_purpose_of_the_channel(session, org):
    patient = await make_patient(session, org, phone="+34612000101")
    at = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    with clock.frozen(at):
        written = await patients.set_consent(
            session,
            Principal.system(org.id),
            patient.id,
            channel="sms",
            purpose=None,
            granted=False,
            source="keyword:STOP",
        )
    assert {r.purpose for r in written} == {"care", "reminders", "marketing"}
    for purpose in ("care", "reminders", "marketing"):
        d = await patients.consent_allows(session, org.id, patient.id, channel="sms", purpose=purpose)
        assert not d.allowed and d.reason == "opted_out" and d.source == "keyword:STOP"
        assert d.recorded_at == at
    # other channels are untouched
    assert (await patients.consent_allows(session, org.id, patient.id, channel="whatsapp",
                                          purpose="care")).allowed
    # a repeated STOP writes nothing new
    assert await patients.set_consent(
        session,
        Principal.system(org.id),
        patient.id,
        channel="sms",
        purpose=None,
        granted=False,
        source="keyword:STOP",
    ) == []

    await patients.set_consent(
        session,
        Principal.system(org.id),
        patient.id,
        channel="sms",
        purpose=None,
        granted=True,
        source="keyword:START",
    )
    assert (await patients.consent_allows(session, org.id, patient.id, channel="sms", purpose="care")).allowed
    marketing = await patients.consent_allows(session, org.id, patient.id, channel="sms", purpose="marketing")
    assert marketing.allowed and marketing.basis == "record"
    history = (await session.scalars(select(Consent).where(Consent.patient_id == patient.id))).all()
    assert len(history) == 6  # nothing overwritten
    types = set(await session.scalars(select(EventRecord.type).where(EventRecord.org_id == org.id)))
    assert "patient.consent_changed" in types


async def test_data_sharing_consent(session, org):
    patient = await make_patient(session, org)
    assert (await patients.data_sharing_allows(session, org.id, patient.id, purpose="ai_processing")).allowed
    await patients.set_consent(
        session,
        principal(org),
        patient.id,
        channel=None,
        purpose="ai_processing",
        granted=False,
        source="paper_form",
    )
    d = await patients.data_sharing_allows(session, org.id, patient.id, purpose="ai_processing")
    assert not d.allowed and d.reason == "opted_out"
    assert (await patients.data_sharing_allows(session, org.id, patient.id, purpose="ehr_export")).allowed


async def test_consent_rejects_unknown_keys_and_unknown_patients(session, org, other_org):
    patient = await make_patient(session, org)
    with pytest.raises(ValidationFailed) as bad_channel:
        await patients.consent_allows(session, org.id, patient.id, channel="pigeon", purpose="care")
    assert bad_channel.value.errors[0]["field"] == "channel"
    with pytest.raises(ValidationFailed):
        await patients.consent_allows(session, org.id, patient.id, channel="sms", purpose="ai_processing")
    with pytest.raises(ValidationFailed):
        await patients.set_consent(
            session,
            Principal.system(org.id),
            patient.id,
            channel=None,
            purpose=None,
            granted=True,
            source="api",
        )
    with pytest.raises(NotFound):
        await patients.consent_allows(session, other_org.id, patient.id, channel="sms", purpose="care")
    with pytest.raises(NotFound):
        await patients.consent_allows(session, org.id, uuid.uuid4(), channel="sms", purpose="care")


async def test_deceased_or_deleted_patients_are_never_contacted(client, session, org):
    patient = await make_patient(session, org)
    await patients.set_consent(
        session,
        Principal.system(org.id),
        patient.id,
        channel="email",
        purpose="marketing",
        granted=True,
        source="api",
    )
    r = await client.patch(f"/patients/{patient.id}",
                           json={"status": "deceased", "deceased_date": "2026-01-01"})
    assert r.status_code == 200
    await session.refresh(patient)  # the API wrote through its own session
    d = await patients.consent_allows(session, org.id, patient.id, channel="email", purpose="care")
    assert not d.allowed and d.reason == "patient_deceased"
    assert (await client.delete(f"/patients/{patient.id}")).status_code == 204
    await session.refresh(patient)
    d = await patients.consent_allows(session, org.id, patient.id, channel="email", purpose="care")
    assert not d.allowed and d.reason == "patient_deleted"


async def test_consent_api(client, make_client):
    created = (await client.post("/patients", json={"given_name": "Ana", "family_name": "Pérez"})).json()
    pid = created["id"]

    before = (await client.get(f"/patients/{pid}/consent")).json()
    assert len(before["contact"]) == 12 and before["history"] == []
    marketing = [s for s in before["contact"] if s["purpose"] == "marketing"]
    assert all(not s["allowed"] and s["basis"] == "default" for s in marketing)

    r = await client.post(f"/patients/{pid}/consent", json={"changes": [
        {"channel": "whatsapp", "purpose": "marketing", "granted": True, "source": "intake_form"},
        {"channel": "voice", "granted": False},
        {"purpose": "ehr_export", "granted": False, "note": "asked at the desk"},
    ]})

    assert r.status_code == 200, r.text
    body = r.json()
    state = {(s["channel"], s["purpose"]): s for s in body["contact"] + body["data_sharing"]}
    whatsapp_marketing = state[("whatsapp", "marketing")]
    assert whatsapp_marketing["allowed"] and whatsapp_marketing["source"] == "intake_form"
    assert not state[("voice", "care")]["allowed"] and state[("voice", "care")]["reason"] == "opted_out"
    assert not state[(None, "ehr_export")]["allowed"]
    assert state[(None, "ai_processing")]["allowed"] and state[(None, "ai_processing")]["basis"] == "default"
    assert len(body["history"]) == 5
    assert body["history"][0]["recorded_by_kind"] == "api_key"

    bad = await client.post(f"/patients/{pid}/consent",
                            json={"changes": [{"channel": "sms", "purpose": "ehr_export", "granted": True}]})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "changes.0.purpose"
    nothing = await client.post(f"/patients/{pid}/consent", json={"changes": [{"granted": True}]})
    assert nothing.status_code == 422
    assert len((await client.get(f"/patients/{pid}/consent")).json()["history"]) == 5  # nothing half-written

    support = await make_client("support_agent")
    assert (await support.get(f"/patients/{pid}/consent")).status_code == 200
    denied = await support.post(f"/patients/{pid}/consent",
                                json={"changes": [{"channel": "sms", "granted": True}]})
    assert denied.status_code == 403


async def test_consents_allow_answers_several_channels_as_consent_allows_does(session, org, client):
    patient = await make_patient(session, org, phone="+34612000190", email="several@example.org")
    who = Principal.system(org.id)
    await patients.set_consent(session, who, patient.id, channel="sms", purpose=None, granted=False, source="api")
    await patients.set_consent(session, who, patient.id, channel="email", purpose="marketing", granted=True,
                               source="api")
    await patients.set_consent(session, who, patient.id, channel="whatsapp", purpose="care", granted=False,
                               source="api")
    await patients.set_consent(session, who, patient.id, channel="whatsapp", purpose="care", granted=True,
                               source="keyword:START")  # the newest record wins
    channels = ["whatsapp", "sms", "email", "voice"]
    for purpose in ("care", "reminders", "marketing"):
        loaded = await patients.get(session, org.id, patient.id)
        several = await patients.consents_allow(session, loaded, channels=channels, purpose=purpose)
        assert list(several) == channels
        for channel in channels:
            one = await patients.consent_allows(session, org.id, patient.id, channel=channel, purpose=purpose)
            assert several[channel] == one, (channel, purpose)
    assert await patients.consents_allow(session, loaded, channels=[], purpose="care") == {}
    with pytest.raises(ValidationFailed):
        await patients.consents_allow(session, loaded, channels=["pigeon"], purpose="care")
    # a merged patient is answered for its survivor, like consent_allows
    duplicate = await make_patient(session, org, phone="+34612000191")
    r = await client.post(f"/patients/{patient.id}/merge", json={"duplicate_id": str(duplicate.id)})
    assert r.status_code == 200, r.text
    merged = await patients.get(session, org.id, duplicate.id)
    await session.refresh(merged)
    assert merged.merged_into_id == patient.id
    several = await patients.consents_allow(session, merged, channels=channels, purpose="care")
    for channel in channels:
        assert several[channel] == await patients.consent_allows(session, org.id, duplicate.id, channel=channel,
                                                                 purpose="care")
    assert not several["sms"].allowed and several["whatsapp"].allowed
