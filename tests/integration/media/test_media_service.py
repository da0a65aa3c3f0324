"""Media (the plan's named tests): upload URLs, verification, deduplication, downloads, listing —
each on the local backend (for real, through the API's signed URLs) and on S3 (a local moto server)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters import storage as storage_adapter
from prm.core import clock
from prm.core.audit import AuditEntry
from prm.identity.models import Organisation
from prm.media.models import Media, MediaBlob
from prm.settings import Settings
from tests.fixtures import media_samples as samples
from tests.fixtures.factories import make_patient
from tests.fixtures.media import declaration, get_url, put_bytes, upload_file


def _storage(settings: Settings) -> storage_adapter.Storage:
    return storage_adapter.for_settings(settings)


async def _blob(session: AsyncSession, org: Organisation, sha: str) -> MediaBlob | None:
    return await session.scalar(select(MediaBlob).where(MediaBlob.org_id == org.id, MediaBlob.sha256 == sha))


async def _audits(session: AsyncSession, media_id: str, action: str) -> list[AuditEntry]:
    return list(await session.scalars(select(AuditEntry).where(
        AuditEntry.resource_type == "media", AuditEntry.resource_id == media_id, AuditEntry.action == action)))


async def test_generate_presigned_upload_url(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
    media_backend: str,
) -> None:
    patient: Any = await make_patient(session, org)
    data = samples.pdf(4000)
    r = await media_client.post("/media", json=declaration(data, "application/pdf", "referral.pdf",
                                                           patient_id=patient.id))
    assert r.status_code == 201, r.text
    answer = r.json()
    upload = answer["upload"]
    assert answer["deduplicated"] is False and answer["media"]["status"] == "pending"
    assert upload["method"] == "PUT" and upload["headers"]["Content-Type"] == "application/pdf"
    query = parse_qs(urlsplit(upload["url"]).query)
    if media_backend == "local":
        assert upload["url"].startswith("https://prm.test/media/local/")
        assert query["sha256"] == [samples.sha256(data)] and query["size"] == [str(len(data))]
        assert "signature" in query
    else:
        # S3 checks what the URL signs: type, length and checksum are signed headers, the expiry is the TTL
        assert upload["url"].startswith(media_settings.media_s3_endpoint_url or "")
        signed = query["X-Amz-SignedHeaders"][0].split(";")
        assert {"content-type", "content-length", "x-amz-checksum-sha256", "host"} <= set(signed)
        assert query["X-Amz-Expires"] == [str(media_settings.media_upload_url_ttl_seconds)]
        assert upload["headers"]["x-amz-checksum-sha256"] == storage_adapter.S3Storage.checksum(samples.sha256(data))
    # nothing uploaded yet: completing is a conflict, not a success
    early = await media_client.post(f"/media/{answer['media']['id']}/complete")
    assert early.status_code == 409 and early.json()["code"] == "upload_missing"
    put = await put_bytes(media_client, upload, data)
    assert put.status_code == 200, put.text
    done = await media_client.post(f"/media/{answer['media']['id']}/complete")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "available" and done.json()["verified_at"] is not None
    again = await media_client.post(f"/media/{answer['media']['id']}/complete")
    assert again.status_code == 200 and again.json() == done.json()


async def test_local_upload_url_refuses_tampering_expiry_and_other_bytes(
    session: AsyncSession, org: Organisation, make_client: Any, settings: Settings,
) -> None:
    client = await make_client("coordinator")
    data = samples.png(2000)
    r = await client.post("/media", json=declaration(data, "image/png", "scan.png"))
    upload = r.json()["upload"]
    url = upload["url"]
    # another size or digest in the URL: the signature no longer matches
    for tampered in (url.replace(f"size={len(data)}", f"size={len(data) + 1}"),
                     url.replace(samples.sha256(data), samples.sha256(b"other")),
                     url[:-4] + ("0000" if not url.endswith("0000") else "1111")):
        refused = await put_bytes(client, {**upload, "url": tampered}, data)
        assert refused.status_code == 403 and refused.json()["code"] == "invalid_signature", refused.text
    wrong_type = await put_bytes(client, upload, data, **{"Content-Type": "application/pdf"})
    assert wrong_type.status_code == 403 and wrong_type.json()["code"] == "content_type_mismatch"
    longer = await put_bytes(client, upload, data + b"x")
    assert longer.status_code == 413
    other = bytearray(data)
    other[-20] ^= 0xFF
    swapped = await put_bytes(client, upload, bytes(other))
    assert swapped.status_code == 400 and swapped.json()["code"] == "checksum_mismatch"
    key = storage_adapter.new_key(org.id, samples.sha256(data))
    assert _storage(settings).size_of(key) is None  # nothing of the refused bodies was kept
    with clock.frozen(clock.now() + timedelta(seconds=settings.media_upload_url_ttl_seconds + 5)):
        expired = await put_bytes(client, upload, data)
    assert expired.status_code == 403 and expired.json()["code"] == "url_expired"
    assert (await put_bytes(client, upload, data)).status_code == 200


async def test_generate_presigned_download_url(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
    media_backend: str,
) -> None:
    data = samples.jpeg(3000)
    media = await upload_file(media_client, data, "image/jpeg", "rash photo.jpg")
    r = await media_client.get(f"/media/{media['id']}/download-url")
    assert r.status_code == 200, r.text
    link = r.json()
    assert link["filename"] == "rash photo.jpg" and link["content_type"] == "image/jpeg"
    fetched = await get_url(media_client, link["url"])
    assert fetched.status_code == 200 and fetched.content == data
    assert fetched.headers["content-type"].startswith("image/jpeg")
    assert fetched.headers["content-disposition"].startswith('attachment; filename="rash photo.jpg"')
    [issued] = await _audits(session, media["id"], "download_url")
    assert issued.details["purpose"] == "download"
    query = parse_qs(urlsplit(link["url"]).query)
    if media_backend == "s3":
        assert query["X-Amz-Expires"] == [str(media_settings.media_download_url_ttl_seconds)]
        assert query["response-content-disposition"][0].startswith("attachment;")
    else:
        tampered = link["url"].replace("filename=rash", "filename=evil")
        assert (await get_url(media_client, tampered)).status_code == 403
        later = clock.now() + timedelta(seconds=media_settings.media_download_url_ttl_seconds + 1)
        with clock.frozen(later):
            expired = await get_url(media_client, link["url"])
        assert expired.status_code == 403 and expired.json()["code"] == "url_expired"


async def test_record_media_metadata(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    ticket = await media_client.post("/tickets", json={"subject": "Insurance card", "patient_id": str(patient.id)})
    assert ticket.status_code == 201, ticket.text
    data = samples.docx()
    media = await upload_file(media_client, data, "application/vnd.openxmlformats-officedocument.wordprocessingml."
                              "document", "../../etc/Referral\x07.docx", ticket_id=ticket.json()["id"])
    row = await session.get(Media, uuid.UUID(media["id"]))
    assert row is not None
    assert (row.filename, row.size_bytes, row.sha256, row.status, row.source) == (
        "Referral_.docx", len(data), samples.sha256(data), "available", "upload")
    # the patient comes from the ticket when not given
    assert row.patient_id == patient.id and row.ticket_id == uuid.UUID(ticket.json()["id"])
    assert row.created_by_kind == "api_key" and row.verified_at is not None
    blob = await _blob(session, org, samples.sha256(data))
    assert blob is not None and blob.state == "stored" and blob.content_type == row.content_type
    assert _storage(media_settings).size_of(blob.storage_key) == len(data)
    assert await _audits(session, media["id"], "create")
    # an unknown ticket, or one of another patient, is refused naming the field
    other: Any = await make_patient(session, org)
    r = await media_client.post("/media", json=declaration(data, "application/pdf", ticket_id=uuid.uuid4()))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "ticket_id"
    r = await media_client.post("/media", json=declaration(samples.pdf(), "application/pdf", patient_id=other.id,
                                                           ticket_id=ticket.json()["id"]))
    assert r.status_code == 422 and r.json()["code"] == "link_patient_mismatch"


async def test_get_media_by_id(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    media = await upload_file(media_client, samples.heic(5000), "image/heic", "IMG_0001.HEIC", patient_id=patient.id)
    r = await media_client.get(f"/media/{media['id']}")
    assert r.status_code == 200
    body = r.json()
    assert (body["id"], body["filename"], body["content_type"], body["patient_id"], body["status"]) == (
        media["id"], "IMG_0001.HEIC", "image/heic", str(patient.id), "available")
    [read] = await _audits(session, media["id"], "read")
    assert read.patient_id == patient.id


async def test_list_patient_media(
    session: AsyncSession, org: Organisation, other_org: Organisation, media_client: httpx.AsyncClient,
    make_client: Any, media_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    sibling: Any = await make_patient(session, org)
    first = await upload_file(media_client, samples.pdf(1500), "application/pdf", "a.pdf", patient_id=patient.id)
    with clock.frozen(clock.now() + timedelta(seconds=5)):
        second = await upload_file(media_client, samples.mp3(1500), "audio/mpeg", "b.mp3", patient_id=patient.id)
        gone = await upload_file(media_client, samples.wav(1500), "audio/wav", "c.wav", patient_id=patient.id)
        await upload_file(media_client, samples.ogg(1500), "audio/ogg", "d.ogg", patient_id=sibling.id)
    assert (await media_client.delete(f"/media/{gone['id']}")).status_code == 204
    r = await media_client.get(f"/patients/{patient.id}/media")
    assert r.status_code == 200, r.text
    assert [m["id"] for m in r.json()["items"]] == [second["id"], first["id"]] and r.json()["total"] == 2
    by_filter = await media_client.get("/media", params={"patient_id": str(patient.id), "content_type": "audio/mp3"})
    assert [m["id"] for m in by_filter.json()["items"]] == [second["id"]]
    theirs = await make_client("admin", for_org=other_org)
    assert (await theirs.get(f"/patients/{patient.id}/media")).status_code == 404
    # another organisation's patient id in a filter is refused like one that exists nowhere (issue 9)
    refused = await theirs.get("/media", params={"patient_id": str(patient.id)})
    assert refused.status_code == 422 and [e["field"] for e in refused.json()["errors"]] == ["patient_id"]


async def test_check_file_duplicates(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    patient: Any = await make_patient(session, org)
    other: Any = await make_patient(session, org)
    data = samples.png(6000)
    # two declarations of the same bytes before either is uploaded: one object, both complete
    r1 = await media_client.post("/media", json=declaration(data, "image/png", "one.png", patient_id=patient.id))
    r2 = await media_client.post("/media", json=declaration(data, "image/png", "two.png", patient_id=patient.id))
    assert r1.json()["upload"] is not None and r2.json()["upload"] is not None
    assert (await put_bytes(media_client, r1.json()["upload"], data)).status_code == 200
    one = await media_client.post(f"/media/{r1.json()['media']['id']}/complete")
    two = await media_client.post(f"/media/{r2.json()['media']['id']}/complete")
    assert one.json()["deduplicated"] is False and two.json()["deduplicated"] is True
    # once stored, the same bytes are linked at once: no upload, available, and said so
    r3 = await media_client.post("/media", json=declaration(data, "image/png", "again.png", patient_id=other.id))
    assert r3.status_code == 201
    third = r3.json()
    assert third["deduplicated"] is True and third["upload"] is None and third["media"]["status"] == "available"
    assert "already stored" in third["next"]
    blobs = await session.scalar(select(func.count()).select_from(MediaBlob).where(
        MediaBlob.org_id == org.id, MediaBlob.sha256 == samples.sha256(data)))
    assert blobs == 1
    link = (await media_client.get(f"/media/{third['media']['id']}/download-url")).json()
    fetched = await get_url(media_client, link["url"])
    assert fetched.content == data and 'filename="again.png"' in fetched.headers["content-disposition"]
    # the same bytes declared as something else are refused
    lie = await media_client.post("/media", json=declaration(data, "image/jpeg", "x.jpg"))
    assert lie.status_code == 422 and lie.json()["code"] == "type_mismatch"


async def test_media_not_found(
    session: AsyncSession, org: Organisation, other_org: Organisation, media_client: httpx.AsyncClient,
    make_client: Any, media_settings: Settings,
) -> None:
    missing = await media_client.get(f"/media/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["code"] == "media_not_found"
    mine = await upload_file(media_client, samples.webp(2000), "image/webp", "w.webp")
    theirs = await make_client("admin", for_org=other_org)
    for method, path in (("GET", f"/media/{mine['id']}"), ("GET", f"/media/{mine['id']}/download-url"),
                         ("POST", f"/media/{mine['id']}/complete"), ("DELETE", f"/media/{mine['id']}")):
        r = await theirs.request(method, path)
        assert r.status_code == 404 and r.json()["code"] == "media_not_found", (method, path, r.text)
        assert "w.webp" not in r.text
    assert (await theirs.get("/media")).json()["total"] == 0
    # another organisation uploading the same bytes gets its own object, not a link to ours
    theirs_upload = await theirs.post("/media", json=declaration(samples.webp(2000), "image/webp"))
    assert theirs_upload.json()["deduplicated"] is False and theirs_upload.json()["upload"] is not None
    assert (await media_client.delete(f"/media/{mine['id']}")).status_code == 204
    assert (await media_client.get(f"/media/{mine['id']}")).status_code == 404
    assert (await media_client.get(f"/media/{mine['id']}/download-url")).status_code == 404


async def test_invalid_file_type(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    # refused at declaration: not on the allowlist, or too large for its type
    svg = await media_client.post("/media", json=declaration(samples.svg(), "image/svg+xml", "logo.svg"))
    assert svg.status_code == 422 and svg.json()["code"] == "type_not_allowed"
    assert svg.json()["errors"][0]["field"] == "content_type"
    huge = {**declaration(samples.jpeg(), "image/jpeg"), "size_bytes": 21 * 1024 * 1024}
    too_large = await media_client.post("/media", json=huge)
    assert too_large.status_code == 413 and too_large.json()["errors"][0]["field"] == "size_bytes"
    bad_sha = await media_client.post("/media", json={**declaration(samples.pdf(), "application/pdf"), "sha256": "x"})
    assert bad_sha.status_code == 422 and bad_sha.json()["errors"][0]["field"] == "sha256"

    async def rejected(data: bytes, declared: str, filename: str) -> dict[str, Any]:
        r = await media_client.post("/media", json=declaration(data, declared, filename))
        assert r.status_code == 201, r.text
        assert (await put_bytes(media_client, r.json()["upload"], data)).status_code == 200
        done = await media_client.post(f"/media/{r.json()['media']['id']}/complete")
        assert done.status_code == 422, done.text
        key = storage_adapter.new_key(org.id, samples.sha256(data))
        assert _storage(media_settings).size_of(key) is None  # the object was deleted
        row = await session.get(Media, uuid.UUID(r.json()["media"]["id"]))
        assert row is not None and row.status == "pending"
        return dict(done.json())

    # an executable renamed .pdf: sniffed from its bytes, refused, deleted
    exe = await rejected(samples.exe(3000), "application/pdf", "invoice.pdf")
    assert exe["code"] == "type_not_allowed" and "x-msdownload" in exe["detail"]
    html = await rejected(samples.html(3000), "application/pdf", "page.pdf")
    assert html["code"] == "unrecognised_content"
    png_as_jpeg = await rejected(samples.png(3000), "image/jpeg", "photo.jpg")
    assert png_as_jpeg["code"] == "type_mismatch" and "PNG" in png_as_jpeg["detail"]


async def test_support_agents_read_media_but_do_not_upload(
    session: AsyncSession, org: Organisation, make_client: Any, media_client: httpx.AsyncClient,
    media_settings: Settings,
) -> None:
    media = await upload_file(media_client, samples.pdf(), "application/pdf")
    agent = await make_client("support_agent")
    assert (await agent.get(f"/media/{media['id']}")).status_code == 200
    assert (await agent.get(f"/media/{media['id']}/download-url")).status_code == 200
    r = await agent.post("/media", json=declaration(samples.pdf(1300), "application/pdf"))
    assert r.status_code == 403 and r.json()["missing_scopes"] == ["media:write"]
    assert (await agent.delete(f"/media/{media['id']}")).status_code == 403


async def test_deleted_media_bytes_are_purged_after_the_retention_period(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    from prm.core import jobs

    shared = samples.pdf(2500)
    kept = await upload_file(media_client, shared, "application/pdf", "kept.pdf")
    twin = await upload_file(media_client, shared, "application/pdf", "twin.pdf")
    alone = await upload_file(media_client, samples.jpeg(2500), "image/jpeg", "alone.jpg")
    abandoned = await media_client.post("/media", json=declaration(samples.png(2500), "image/png"))
    for media_id in (twin["id"], alone["id"]):
        assert (await media_client.delete(f"/media/{media_id}")).status_code == 204
    storage = _storage(media_settings)
    alone_key = storage_adapter.new_key(org.id, samples.sha256(samples.jpeg(2500)))
    shared_key = storage_adapter.new_key(org.id, samples.sha256(shared))
    await jobs.defer(session, "media.purge")
    await jobs.run_due(session, names=["media.purge"])
    assert storage.size_of(alone_key) == len(samples.jpeg(2500))  # within the retention period: kept
    later = clock.now() + timedelta(days=media_settings.media_retention_days, minutes=1)
    with clock.frozen(later):
        await jobs.defer(session, "media.purge")
        report = await jobs.run_due(session, names=["media.purge"])
    assert report.failed == []
    assert storage.size_of(alone_key) is None
    assert storage.size_of(shared_key) == len(shared)  # still used by a live file
    assert (await media_client.get(f"/media/{kept['id']}")).status_code == 200
    rows = {m.id: m for m in await session.scalars(select(Media).where(Media.org_id == org.id))}
    assert rows[uuid.UUID(alone["id"])].purged_at is not None and rows[uuid.UUID(alone["id"])].blob_id is None
    assert rows[uuid.UUID(twin["id"])].purged_at is not None
    assert rows[uuid.UUID(abandoned.json()["media"]["id"])].purged_at is not None  # never completed
    assert await _blob(session, org, samples.sha256(samples.jpeg(2500))) is None
    assert await _blob(session, org, samples.sha256(shared)) is not None
    link = (await media_client.get(f"/media/{kept['id']}/download-url")).json()
    assert (await get_url(media_client, link["url"])).content == shared


async def test_merge_moves_media_to_the_surviving_patient(
    session: AsyncSession, org: Organisation, media_client: httpx.AsyncClient, media_settings: Settings,
) -> None:
    from prm.patients import service as patients
    from tests.fixtures.factories import principal

    survivor: Any = await make_patient(session, org, given_name="Ana")
    duplicate: Any = await make_patient(session, org, given_name="Anna")
    media = await upload_file(media_client, samples.pdf(1800), "application/pdf", patient_id=duplicate.id)
    await patients.merge(session, principal(org), survivor.id, duplicate.id)
    listed = (await media_client.get(f"/patients/{survivor.id}/media")).json()
    assert [m["id"] for m in listed["items"]] == [media["id"]]
    # declaring a file for the merged record attaches it to the survivor
    later = await upload_file(media_client, samples.png(1800), "image/png", patient_id=duplicate.id)
    assert later["patient_id"] == str(survivor.id)
    timeline = await media_client.get(f"/patients/{survivor.id}/timeline")
    assert media["id"] in {e["resource_id"] for e in timeline.json()["items"] if e["source"] == "media"}


async def test_links_to_conversations_and_messages_are_checked_within_the_organisation(
    session: AsyncSession, org: Organisation, other_org: Organisation, client: httpx.AsyncClient, make_client: Any,
) -> None:
    patient: Any = await make_patient(session, org, phone="+34600111222")
    conversation = await client.post("/conversations", json={"patient_id": str(patient.id), "channel": "sms"})
    assert conversation.status_code == 201, conversation.text
    media = await upload_file(client, samples.pdf(1700), "application/pdf",
                              conversation_id=conversation.json()["id"])
    assert media["patient_id"] == str(patient.id)  # taken from the conversation
    theirs = await make_client("admin", for_org=other_org)
    for field in ("conversation_id", "message_id", "ticket_id", "intake_session_id"):
        value = conversation.json()["id"] if field == "conversation_id" else str(uuid.uuid4())
        r = await theirs.post("/media", json=declaration(samples.pdf(1701), "application/pdf", **{field: value}))
        assert r.status_code == 422, (field, r.text)
        assert r.json()["errors"][0]["field"] == field
    r = await theirs.post("/media", json=declaration(samples.pdf(1701), "application/pdf", patient_id=patient.id))
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
