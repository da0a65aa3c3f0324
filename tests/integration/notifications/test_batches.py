"""Batch sends."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import sandbox
from prm.core import jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.patients import service as patients
from prm.settings import Settings
from tests.fixtures.messaging import (
    patient_with_contacts,
)

from .support import APPT


async def test_batch_notifications(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    people = [await patient_with_contacts(session, org, tags=["flu-2026"]) for _ in range(4)]
    await patient_with_contacts(session, org, tags=["other"])
    await patients.set_consent(
        session,
        Principal.system(org.id),
        people[0].id,
        channel="sms",
        purpose="marketing",
        granted=True,
        source="api",
    )
    r = await client.post(
        "/notifications/batches",
        json={
            "template_key": "flu_campaign",
            "variables": {},
            "channel": "sms",
            "purpose": "marketing",
            "filter": {"tags": ["flu-2026"]},
        },
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "template_key"
    await client.post(
        "/notifications/templates",
        json={
            "key": "flu_campaign",
            "channel": "sms",
            "body": "{{ patient_name }}, flu shots are here: {{ link }}",
            "variables": ["patient_name", "link"],
        },
    )
    r = await client.post(
        "/notifications/batches",
        json={
            "template_key": "flu_campaign",
            "variables": {"link": "https://clinic.example/flu"},
            "channel": "sms",
            "purpose": "marketing",
            "filter": {"tags": ["flu-2026"]},
        },
    )
    assert r.status_code == 202, r.text
    batch = r.json()
    assert batch["total"] == 4 and batch["counts"] == {"pending": 4} and batch["done"] is False
    await jobs.run_due(session)
    report = (await client.get(f"/notifications/batches/{batch['id']}")).json()
    # marketing needs an opt-in: only the patient who gave one receives it,
    # the others are refused with a reason
    assert report["counts"] == {"sent": 1, "refused": 3} and report["done"] is True
    assert report["completed_at"] is not None
    items = (await client.get(f"/notifications/batches/{batch['id']}/items")).json()
    refused = [i for i in items["items"] if i["status"] == "refused"]
    assert len(refused) == 3 and all(i["reason"].startswith("consent_refused") for i in refused)
    [sent] = await sandbox.outbox(session, org.id, patient_id=people[0].id)
    assert sent.payload["body"].endswith("https://clinic.example/flu")

    listed = await client.post(
        "/notifications/batches",
        json={
            "template_key": "appointment_reminder",
            "variables": APPT,
            "purpose": "reminders",
            "patient_ids": [str(p.id) for p in people[:2]],
        },
    )
    assert listed.json()["total"] == 2
    unknown = await client.post(
        "/notifications/batches",
        json={"template_key": "appointment_reminder", "variables": APPT, "patient_ids": [str(uuid.uuid4())]},
    )
    assert unknown.status_code == 422
