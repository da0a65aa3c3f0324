"""The summary through a configured model (OpenAI's API as a real peer on 127.0.0.1), consent to AI
processing, a journey triggered by `intake.submitted`, and the patient record's merge and timeline."""

from __future__ import annotations

import json
import uuid

import httpx
from pydantic import SecretStr

from prm.core import jobs
from prm.intake import summary
from prm.intake.models import IntakeSession
from prm.patients import service as patients
from prm.patients.registry import merge_handlers, timeline_sources
from prm.settings import Settings
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.openai_fake import FAKE_KEY, OpenAIFake, openai_fake  # noqa: F401  (fixture)
from tests.fixtures.settings_switch import use_settings
from tests.integration.intake.support import ok

RECORDS = {"records": [
    {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Lower back pain for a week"}},
    {"client_item_id": "m1", "type": "medication", "data": {"name": "Naproxen", "dose": "500 mg"}}]}


async def _submitted(session, org, client: httpx.AsyncClient, *, ai_allowed: bool) -> tuple[str, uuid.UUID]:
    patient = await make_patient(session, org, phone="+34612000777")
    who = principal(org)
    await patients.set_consent(session, who, patient.id, channel=None, purpose="intake", granted=True, source="form")
    await patients.set_consent(session, who, patient.id, channel=None, purpose="ai_processing", granted=ai_allowed,
                               source="form")
    s = await ok(await client.post("/intake/sessions", json={"source": "web_form", "patient_id": str(patient.id)}),
                 201)
    await ok(await client.post(f"/intake/sessions/{s['id']}/records", json=RECORDS))
    await ok(await client.post(f"/intake/sessions/{s['id']}/submit"))
    return s["id"], patient.id


def _model(settings: Settings, fake: OpenAIFake) -> Settings:
    return settings.model_copy(update={"llm_provider": "openai", "openai_base_url": fake.base_url,
                                       "openai_api_key": SecretStr(FAKE_KEY), "llm_model": "gpt-4o-mini"})


async def test_a_model_writes_the_summary_when_the_patient_allows_ai(session, org, client, settings,
                                                                   openai_fake: OpenAIFake) -> None:  # noqa: F811
    answer = {key: [] for key in summary.KEYS} | {
        "chief_complaint": "Lower back pain, one week", "medications": ["Naproxen 500 mg"],
        "questions": ["Any numbness or weakness in the legs?"], "answers": {}}
    openai_fake.script_chat(json.dumps(answer))
    with use_settings(_model(settings, openai_fake)):
        session_id, _ = await _submitted(session, org, client, ai_allowed=True)
        await jobs.run_due(session, names=["intake.summarise"])
        written = await ok(await client.get(f"/intake/sessions/{session_id}/summary"))
    assert written["generator"] == "gpt-4o-mini" and written["machine_generated"] is True
    assert written["content"]["questions"] == ["Any numbness or weakness in the legs?"]
    assert written["text"].startswith("Reason: Lower back pain, one week")
    [call] = [r for r in openai_fake.requests if r.path == "/v1/chat/completions"]
    sent = call.json["messages"][1]["content"]
    assert "Naproxen" in sent and "+34612000777" not in sent  # the records, not the contact details


async def test_no_model_without_consent_and_a_bad_answer_falls_back(session, org, client, settings,
                                                                    openai_fake: OpenAIFake) -> None:  # noqa: F811
    with use_settings(_model(settings, openai_fake)):
        refused_id, _ = await _submitted(session, org, client, ai_allowed=False)
        await jobs.run_due(session, names=["intake.summarise"])
        assert [r for r in openai_fake.requests if r.path == "/v1/chat/completions"] == []
        offline = await ok(await client.get(f"/intake/sessions/{refused_id}/summary"))
        assert offline["generator"] == "offline"
        # allowed, but the model answers prose: the offline summary is written instead
        openai_fake.script_chat("The patient has back pain.")
        allowed_id, _ = await _submitted(session, org, client, ai_allowed=True)
        await jobs.run_due(session, names=["intake.summarise"])
        fallback = await ok(await client.get(f"/intake/sessions/{allowed_id}/summary"))
    assert fallback["generator"] == "offline" and fallback["content"]["medications"] == ["Naproxen 500 mg"]


async def test_a_provider_outage_is_retried_by_the_job(session, org, client, settings,
                                                       openai_fake: OpenAIFake) -> None:  # noqa: F811
    openai_fake.fail_next(500, times=4)  # every attempt of the client (1 + 3 retries)
    with use_settings(_model(settings, openai_fake)):
        session_id, _ = await _submitted(session, org, client, ai_allowed=True)
        await jobs.run_due(session, names=["intake.summarise"])
        pending = await ok(await client.get(f"/intake/sessions/{session_id}"))
    assert pending["summary_status"] == "pending"  # not failed: the job runs again later
    missing = await client.get(f"/intake/sessions/{session_id}/summary")
    assert missing.status_code == 404 and missing.json()["summary_status"] == "pending"


async def test_a_journey_starts_when_an_intake_is_submitted(session, org, client: httpx.AsyncClient) -> None:
    journey = await ok(await client.post("/journeys", json={
        "key": "after-intake", "name": "After intake", "entry_policy": "once_per_patient",
        "definition": {"triggers": [{"event": "intake.submitted"}],
                       "stages": [{"key": "review", "name": "Review"}]}}), 201)
    await ok(await client.post(f"/journeys/{journey['id']}/publish"), 201)
    _, patient_id = await _submitted(session, org, client, ai_allowed=False)
    for _ in range(3):
        await jobs.run_due(session)
    instances = await ok(await client.get("/journey-instances", params={"patient_id": str(patient_id),
                                                                        "journey_id": journey["id"]}))
    assert instances["total"] == 1 and instances["items"][0]["current_stage"] == "review"


async def test_merge_moves_intake_and_the_timeline_shows_it(session, org, client: httpx.AsyncClient) -> None:
    keep = await make_patient(session, org, given_name="Ana", family_name="Pérez")
    dup = await make_patient(session, org, given_name="Ana", family_name="Perez")
    await patients.set_consent(session, principal(org), dup.id, channel=None, purpose="intake", granted=True,
                               source="form")
    s = await ok(await client.post("/intake/sessions", json={"source": "staff", "patient_id": str(dup.id)}), 201)
    assert await merge_handlers()["intake"](session, org.id, dup.id, keep.id) == 1
    moved = await session.get(IntakeSession, uuid.UUID(s["id"]))
    await session.refresh(moved)
    assert moved.patient_id == keep.id
    [entry] = await timeline_sources()["intake"](session, org.id, keep.id, None, 10)
    assert (entry.kind, entry.resource_id, entry.source) == ("intake.open", s["id"], "intake")
