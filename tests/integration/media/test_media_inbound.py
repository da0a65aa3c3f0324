"""Attachments received with messages: downloaded from the provider (faked at the HTTP layer), verified
like uploads, retried when the failure is transient, rejected with the reason when not."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import respx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import clock, jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.media import inbound
from prm.media import service as media
from prm.media.models import Media, MediaBlob
from prm.settings import Settings
from tests.fixtures import media_samples as samples
from tests.fixtures.factories import make_patient
from tests.fixtures.media import upload_file
from tests.fixtures.messaging import TWILIO_SID

BASE = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages/MMx/Media"


async def _attach(session: AsyncSession, org: Organisation, patient: Any, *items: tuple[str, str],
                  sid: str | None = None) -> list[Media]:
    return await media.attach_inbound(
        session, Principal.system(org.id), message_id=uuid.uuid4(), patient_id=patient.id, source="whatsapp",
        provider="twilio", provider_message_id=sid or f"MM{uuid.uuid4().hex}",
        attachments=[media.Attachment(url=url, content_type=ct) for url, ct in items],
    )


async def _fetch(session: AsyncSession) -> jobs.RunReport:
    return await jobs.run_due(session, names=[media.FETCH_JOB])


async def test_a_transient_failure_is_retried_with_backoff(
    session: AsyncSession, org: Organisation, messaging_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    photo = samples.jpeg(4000)
    with respx.mock() as provider:
        route = provider.get(f"{BASE}/ME1").mock(side_effect=[httpx.Response(503), httpx.ConnectError("down"),
                                                              httpx.Response(200, content=photo)])
        [item] = await _attach(session, org, patient, (f"{BASE}/ME1", "image/jpeg"))
        await _fetch(session)
        await session.refresh(item)
        assert (item.status, item.fetch_attempts) == ("pending", 1)
        await _fetch(session)  # the retry is scheduled later, not run at once
        assert route.call_count == 1
        with clock.frozen(clock.now() + timedelta(seconds=inbound.RETRY_BASE_SECONDS + 5)) as frozen:
            await _fetch(session)
            frozen.advance(timedelta(seconds=2 * inbound.RETRY_BASE_SECONDS + 5))
            await _fetch(session)
    await session.refresh(item)
    assert route.call_count == 3
    assert (item.status, item.sha256, item.size_bytes, item.source_url) == (
        "available", samples.sha256(photo), len(photo), None)


async def test_giving_up_after_the_last_attempt(
    session: AsyncSession, org: Organisation, messaging_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    with respx.mock() as provider, clock.frozen(clock.now()) as frozen:
        provider.get(f"{BASE}/ME9").mock(return_value=httpx.Response(500))
        [item] = await _attach(session, org, patient, (f"{BASE}/ME9", "application/pdf"))
        for _ in range(inbound.MAX_FETCH_ATTEMPTS + 1):
            await _fetch(session)
            frozen.advance(timedelta(hours=2))
    await session.refresh(item)
    assert (item.status, item.failure_code, item.fetch_attempts) == (
        "rejected", "download_failed", inbound.MAX_FETCH_ATTEMPTS)


async def test_attachments_that_are_not_what_they_claim_are_rejected_with_the_reason(
    session: AsyncSession, org: Organisation, messaging_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    with respx.mock(assert_all_called=False) as provider:
        provider.get(f"{BASE}/exe").mock(return_value=httpx.Response(200, content=samples.exe(3000)))
        provider.get(f"{BASE}/html").mock(return_value=httpx.Response(200, content=samples.html(3000)))
        provider.get(f"{BASE}/gone").mock(return_value=httpx.Response(404))
        provider.get(f"{BASE}/huge").mock(return_value=httpx.Response(
            200, content=b"\xff\xd8\xff" + b"\x00" * 100, headers={"Content-Length": str(21 * 1024 * 1024)}))
        never = provider.get(f"{BASE}/video")
        items = await _attach(session, org, patient, (f"{BASE}/exe", "image/jpeg"), (f"{BASE}/html", "image/png"),
                              (f"{BASE}/gone", "application/pdf"), (f"{BASE}/huge", "image/jpeg"),
                              (f"{BASE}/video", "video/mp4"))
        await _fetch(session)
    assert not never.called  # a type off the allowlist is never downloaded
    for item in items:
        await session.refresh(item)
    assert [(i.status, i.failure_code) for i in items] == [
        ("rejected", "type_not_allowed"), ("rejected", "unrecognised_content"), ("rejected", "download_refused"),
        ("rejected", "file_too_large"), ("rejected", "type_not_allowed"),
    ]
    assert all(i.source_url is None and i.blob_id is None for i in items)
    assert await session.scalar(select(func.count()).select_from(MediaBlob).where(MediaBlob.org_id == org.id)) == 0


async def test_credentials_only_go_to_the_provider_and_attachments_are_recorded_once(
    session: AsyncSession, org: Organisation, messaging_settings: Settings, make_client: Any,
) -> None:
    patient: Any = await make_patient(session, org)
    letter = samples.pdf(2200)
    client = await make_client("coordinator")
    uploaded = await upload_file(client, letter, "application/pdf", "letter.pdf", patient_id=patient.id)
    with respx.mock() as provider:
        elsewhere = provider.get("https://files.example.test/a.pdf").mock(
            return_value=httpx.Response(200, content=letter))
        first = await _attach(session, org, patient, ("https://files.example.test/a.pdf", "application/pdf"),
                              sid="MMsame")
        again = await _attach(session, org, patient, ("https://files.example.test/a.pdf", "application/pdf"),
                              sid="MMsame")
        await _fetch(session)
    assert len(first) == 1 and again == []
    assert "authorization" not in elsewhere.calls[0].request.headers
    await session.refresh(first[0])
    # the same bytes as an uploaded file: stored once, linked, and said so
    assert first[0].status == "available" and first[0].deduplicated is True
    assert first[0].blob_id is not None
    stored = await session.get(Media, uuid.UUID(uploaded["id"]))
    assert stored is not None and stored.blob_id == first[0].blob_id
