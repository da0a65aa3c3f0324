"""Batch sends."""

from __future__ import annotations

import asyncio
import importlib.util
import uuid
from typing import Any

import httpx
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from prm.app import migrations_dir
from prm.communications import sandbox
from prm.core import jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.notifications import batches
from prm.notifications import service as notifications
from prm.notifications.models import NotificationBatch, NotificationBatchItem
from prm.notifications.schemas import BatchCreate
from prm.patients import service as patients
from prm.settings import Settings
from tests.conftest import Committed
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.messaging import new_phone, patient_with_contacts

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


async def _sms_batch(session: AsyncSession, org: Organisation, people: list[Any]) -> Any:
    return await notifications.create_batch(
        session, principal(org),
        BatchCreate(template_key="appointment_reminder", channel="sms", purpose="care", variables=APPT,
                    patient_ids=[p.id for p in people]))


async def test_the_last_two_items_finishing_together_complete_the_batch(committed: Committed) -> None:
    """Two items in flight at once, each counting the other before either commits: the batch row lock
    makes the later one wait for the earlier's commit, so it sees no item pending and completes it."""
    org, _ = await committed.org()
    async with committed.session() as s:
        people = [await make_patient(s, org, phone=new_phone()) for _ in range(2)]
        batch = await _sms_batch(s, org, people)
        await s.commit()
        item_ids = [str(i) for i in await s.scalars(
            select(NotificationBatchItem.id).where(NotificationBatchItem.batch_id == batch.id))]
    first, second = committed.session(), committed.session()
    try:
        assert await batches.send_batch_item(first, org_id=str(org.id), item_id=item_ids[0]) == "queued"
        # the second item runs to its end while the first has not committed
        later = asyncio.create_task(batches.send_batch_item(second, org_id=str(org.id), item_id=item_ids[1]))
        await asyncio.sleep(0.2)
        await first.commit()
        assert await later == "queued"
        await second.commit()
    finally:
        await first.close()
        await second.close()
    async with committed.session() as s:
        done = await s.scalar(select(NotificationBatch.completed_at).where(NotificationBatch.id == batch.id))
        statuses = list(await s.scalars(select(NotificationBatchItem.status)
                                        .where(NotificationBatchItem.batch_id == batch.id)))
    await committed.cancel_queued_jobs(org.id)
    assert statuses == ["queued", "queued"]
    assert done is not None, "both items finished and the batch was left incomplete"


async def test_the_migration_completes_the_batches_the_race_left_open(committed: Committed) -> None:
    """`20261130_batch_completion` marks complete every batch with no pending item, and no other."""
    spec = importlib.util.spec_from_file_location(
        "batch_completion", migrations_dir() / "versions" / "20261130_batch_completion.py")
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    org, _ = await committed.org()
    async with committed.session() as s:
        people = [await make_patient(s, org, phone=new_phone()) for _ in range(3)]
        made = [await _sms_batch(s, org, people[:n]) for n in (2, 3)]
        await s.commit()
        stuck, running = (b.id for b in made)
        await committed.cancel_queued_jobs(org.id)
        # the stuck batch: every item done, left open; the running one: one item still pending
        await s.execute(update(NotificationBatchItem).where(NotificationBatchItem.batch_id == stuck)
                        .values(status="refused", reason="test"))
        await s.execute(update(NotificationBatchItem).where(
            NotificationBatchItem.batch_id == running, NotificationBatchItem.patient_id != people[0].id)
            .values(status="refused", reason="test"))
        await s.commit()
        await s.execute(text(migration.COMPLETE_FINISHED_BATCHES))
        await s.commit()
        done = {batch_id: at for batch_id, at in await s.execute(
            select(NotificationBatch.id, NotificationBatch.completed_at).where(NotificationBatch.org_id == org.id))}
    assert done[stuck] is not None and done[running] is None
