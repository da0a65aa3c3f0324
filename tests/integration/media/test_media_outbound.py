"""Stored files sent with a message: Twilio receives our signed URL (issued at sending time) and can
fetch the file through it; another patient's file is never sent."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.core import jobs
from prm.core.audit import AuditEntry
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures import media_samples as samples
from tests.fixtures.media import upload_file
from tests.fixtures.messaging import TwilioFake, patient_with_contacts


async def test_a_stored_file_goes_out_through_a_signed_url(
    session: AsyncSession, client: httpx.AsyncClient, anon_client: httpx.AsyncClient, twilio_org: Organisation,
    twilio_api: TwilioFake, messaging_settings: Settings,
) -> None:
    patient: Any = await patient_with_contacts(session, twilio_org)
    leaflet = samples.pdf(2600)
    stored = await upload_file(client, leaflet, "application/pdf", "aftercare.pdf", patient_id=patient.id)
    r = await client.post("/communications", json={
        "patient_id": str(patient.id), "channel": "sms", "body": "Your aftercare leaflet",
        "media_ids": [stored["id"]],
    })
    assert r.status_code == 201, r.text
    assert r.json()["media"] == [{"url": None, "content_type": "application/pdf", "media_id": stored["id"],
                                  "status": None, "filename": None}]
    await jobs.run_due(session, names=[communications.SEND_JOB])
    comm = await communications.get(session, Principal.system(twilio_org.id), uuid.UUID(r.json()["id"]))
    assert comm.status == "sent", comm.error_message
    [url] = twilio_api.sent_forms()[-1]["MediaUrl"]
    assert url.startswith(messaging_settings.public_base_url + "/media/local/")
    fetched = await anon_client.get(url)  # what Twilio does with it
    assert fetched.status_code == 200 and fetched.content == leaflet
    issued = await session.scalars(select(AuditEntry).where(
        AuditEntry.resource_id == stored["id"], AuditEntry.action == "download_url"))
    assert [a.details["purpose"] for a in issued] == ["provider"]


async def test_only_the_patients_own_available_files_can_be_sent(
    session: AsyncSession, client: httpx.AsyncClient, twilio_org: Organisation, twilio_api: TwilioFake,
) -> None:
    patient: Any = await patient_with_contacts(session, twilio_org)
    other: Any = await patient_with_contacts(session, twilio_org)
    theirs = await upload_file(client, samples.jpeg(2000), "image/jpeg", patient_id=other.id)
    general = await upload_file(client, samples.png(2000), "image/png", "map.png")
    mine = await upload_file(client, samples.pdf(2000), "application/pdf", patient_id=patient.id)
    base = {"patient_id": str(patient.id), "channel": "sms", "body": "Here you are"}
    r = await client.post("/communications", json={**base, "media_ids": [general["id"], theirs["id"]]})
    assert r.status_code == 422 and r.json()["code"] == "media_of_another_patient"
    assert r.json()["errors"][0]["field"] == "media_ids.1"
    r = await client.post("/communications", json={**base, "media_ids": [str(uuid.uuid4())]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "media_ids.0"
    r = await client.post("/communications", json={**base, "channel": "email", "subject": "x",
                                                   "media_ids": [mine["id"]]})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "media_ids"
    # a file deleted before the message goes out: the message fails, nothing is sent
    r = await client.post("/communications", json={**base, "media_ids": [general["id"], mine["id"]]})
    assert r.status_code == 201, r.text
    assert (await client.delete(f"/media/{mine['id']}")).status_code == 204
    sent_before = len(twilio_api.sent_forms())
    await jobs.run_due(session, names=[communications.SEND_JOB])
    comm = await communications.get(session, Principal.system(twilio_org.id), uuid.UUID(r.json()["id"]))
    assert (comm.status, comm.error_code) == ("failed", "media_unavailable")
    assert len(twilio_api.sent_forms()) == sent_before
