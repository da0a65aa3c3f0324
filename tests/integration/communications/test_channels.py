"""Consent and channel rules, and channel configuration."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.models import Communication
from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.messaging import (
    CLINIC_NUMBER,
    inbound,
    patient_with_contacts,
)

from .support import NOW


async def test_consent_refusal_is_409_with_reason(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    from prm.patients import service as patients

    p = await patient_with_contacts(session, org)
    await patients.set_consent(
        session,
        Principal.system(org.id),
        p.id,
        channel="sms",
        purpose="care",
        granted=False,
        source="api",
    )
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "sms", "body": "x"})
    assert r.status_code == 409 and r.json()["code"] == "consent_refused" and r.json()["reason"] == "opted_out"
    r = await client.post(
        "/communications",
        json={
            "patient_id": str(p.id),
            "channel": "email",
            "subject": "s",
            "body": "offer",
            "purpose": "marketing",
        },
    )
    assert r.status_code == 409 and r.json()["reason"] == "not_opted_in"
    assert (
        await session.scalar(select(func.count()).select_from(Communication).where(Communication.patient_id == p.id))
        == 0
    )


async def test_whatsapp_free_form_outside_24h_window_is_422(
    session: AsyncSession,
    client: httpx.AsyncClient,
    org: Organisation,
    messaging_settings: Settings,
    anon_client: httpx.AsyncClient,
) -> None:
    await client.put("/communications/channels/whatsapp", json={"sender": CLINIC_NUMBER})
    p = await patient_with_contacts(session, org)
    r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
    assert r.status_code == 422 and r.json()["code"] == "whatsapp_window_closed"
    with clock.frozen(NOW) as c:
        await inbound(anon_client, messaging_settings, from_=p.primary_phone, body="hello")
        c.advance(timedelta(hours=23))
        ok = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
        assert ok.status_code == 201
        c.advance(timedelta(hours=2))
        r = await client.post("/communications", json={"patient_id": str(p.id), "channel": "whatsapp", "body": "hi"})
        assert r.status_code == 422
        tpl = await client.post(
            "/communications",
            json={
                "patient_id": str(p.id),
                "channel": "whatsapp",
                "content_sid": "HX" + "a" * 32,
                "content_variables": {"1": "Ana"},
            },
        )
        assert tpl.status_code == 201, tpl.text
        await jobs.run_due(session)
    # the free-form one queued inside the window, but sent after it closed, fails rather than being sent
    assert (await communications.get(
        session,
        Principal.system(org.id),
        ok.json()["id"],
    )).error_code == "whatsapp_window_closed"
    assert (await communications.get(session, Principal.system(org.id), tpl.json()["id"])).status == "sent"


async def test_shape_rules_name_the_field(session: AsyncSession, client: httpx.AsyncClient, org: Organisation) -> None:
    p = await patient_with_contacts(session, org)
    cases = [
        ({"channel": "sms", "body": "x", "subject": "s"}, "subject"),
        ({"channel": "email", "body": "x"}, "subject"),
        ({"channel": "sms", "content_sid": "HX" + "b" * 32}, "content_sid"),
        ({"channel": "email", "subject": "s", "body": "x", "media_urls": ["https://x.test/a"]}, "media_urls"),
        ({"channel": "sms"}, "body"),
    ]
    for payload, field in cases:
        r = await client.post("/communications", json={"patient_id": str(p.id), **payload})
        assert r.status_code == 422 and r.json()["errors"][0]["field"] == field, (payload, r.text)
    no_email = await patient_with_contacts(session, org, email=None)
    r = await client.post(
        "/communications",
        json={"patient_id": str(no_email.id), "channel": "email", "subject": "s", "body": "b"},
    )
    assert r.status_code == 422 and r.json()["code"] == "no_address"


async def test_channel_config_never_returns_the_secret(
    client: httpx.AsyncClient, org: Organisation, make_client, messaging_settings: Settings
) -> None:
    r = await client.put(
        "/communications/channels/voice",
        json={"provider": "twilio", "sender": "+34 910 00 00 09", "webhook_secret": "s" * 32},
    )
    assert r.status_code == 200, r.text
    assert r.json()["has_webhook_secret"] is True and "webhook_secret" not in r.json()
    assert r.json()["sender"] == "+34910000009"
    listed = (await client.get("/communications/channels")).json()
    assert {c["channel"]: c["effective_provider"] for c in listed} == {
        "sms": "sandbox",
        "whatsapp": "sandbox",
        "email": "sandbox",
        "voice": "twilio",
    }
    assert "s" * 32 not in str(listed)
    coordinator = await make_client("coordinator")
    assert (await coordinator.get("/communications/channels")).status_code == 403
    bad = await client.put("/communications/channels/sms", json={"provider": "smtp"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "provider"
