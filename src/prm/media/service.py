"""Media: the published interface other modules use, and the rules of the upload flow.

Upload: `declare` (filename, type, size, SHA-256, links) → an upload URL, or — when the organisation
already stores those bytes — the existing object linked at once (`deduplicated`). `complete` checks
what arrived (size, SHA-256 streamed in bounded memory, the sniffed type against the declared one
and the allowlist); a failure deletes the object and answers 422 naming the reason (413 beyond the
size limit of the type). Downloads are short-lived signed URLs, each one audited. Deletion is soft;
`purge` (the retention job) removes the bytes later. Inbound provider attachments are in `inbound.py`.

Every function acting for a caller takes `who: Principal` after the session; the storage and the
limits come in as a `MediaStore` built from the settings by the router or the job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Select, and_, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters import storage as storage_adapter
from prm.adapters.storage import DownloadTarget, Storage, UploadTarget
from prm.core import audit, clock, events, jobs, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, NotFound, Unavailable, ValidationFailed
from prm.core.pagination import PageParams, matching, paginate
from prm.media import links, verification
from prm.media.links import LinkTarget as LinkTarget  # published: higher modules register link targets
from prm.media.links import link_target as link_target
from prm.media.models import Media, MediaBlob
from prm.media.schemas import MediaCreate
from prm.patients import service as patients
from prm.patients.registry import on_merge, reassign_patient, rows_on_timeline
from prm.settings import Settings

log = structlog.get_logger(__name__)


class PayloadTooLarge(DomainError):
    status = 413
    default_code = "file_too_large"
    title = "Payload too large"


@dataclass(frozen=True)
class MediaStore:
    """The storage backend and the media settings a call needs (built from `Settings`)."""

    storage: Storage
    max_bytes: int = 100 * 1024 * 1024
    upload_ttl_seconds: int = 900
    download_ttl_seconds: int = 300
    provider_ttl_seconds: int = 3600
    retention_days: int = 30
    download_timeout_seconds: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaStore:
        return cls(
            storage=storage_adapter.for_settings(settings),
            max_bytes=settings.media_max_bytes,
            upload_ttl_seconds=settings.media_upload_url_ttl_seconds,
            download_ttl_seconds=settings.media_download_url_ttl_seconds,
            provider_ttl_seconds=settings.media_provider_url_ttl_seconds,
            retention_days=settings.media_retention_days,
            download_timeout_seconds=settings.media_download_timeout_seconds,
        )


def _not_found(media_id: object) -> NotFound:
    return NotFound(f"Media {media_id} not found", code="media_not_found")


def domain_error(exc: verification.Rejected) -> DomainError:
    """A verification rejection as the API error: 413 when too large, else 422 naming the field."""
    if exc.status == 413:
        return PayloadTooLarge(f"{exc.field}: {exc.message}", code=exc.code,
                               errors=[{"field": exc.field, "message": exc.message, "type": exc.code}])
    return ValidationFailed.field(exc.field, exc.message, code=exc.code)


def _actor(who: Principal) -> dict[str, Any]:
    return {"created_by_kind": who.kind, "created_by_id": who.subject_id}


# --- links ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    ticket_id: uuid.UUID | None = None
    intake_session_id: uuid.UUID | None = None


async def _linked_patient(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> Any:
    try:
        return await patients.get(session, org_id, patient_id)
    except NotFound:
        raise ValidationFailed.field("patient_id", "no such patient in this organisation",
                                     code="unknown_patient") from None


async def _link_target(session: AsyncSession, org_id: uuid.UUID, kind: str, target_id: uuid.UUID) -> LinkTarget:
    """The row a `<kind>_id` names in the organisation (422 naming the field when there is none)."""
    resolve = links.resolver(kind)
    target = await resolve(session, org_id, target_id) if resolve is not None else None
    if target is None:
        raise ValidationFailed.field(f"{kind}_id", f"no such {kind.replace('_', ' ')} in this organisation",
                                     code=f"unknown_{kind}")
    return target


async def resolve_links(session: AsyncSession, org_id: uuid.UUID, wanted: Links) -> Links:
    """Check every id within the organisation (422 naming the field otherwise); the patient and the
    conversation are taken from the linked rows when not given, and must agree with them when given."""
    patient_id = wanted.patient_id
    conversation_id = wanted.conversation_id
    if patient_id is not None:
        patient = await _linked_patient(session, org_id, patient_id)
        if patient.merged_into_id is not None:
            patient_id = (await patients.resolve(session, org_id, patient_id)).id
    for kind in links.KINDS:
        field = f"{kind}_id"
        target_id = getattr(wanted, field)
        if target_id is None:
            continue
        target = await _link_target(session, org_id, kind, target_id)
        if target.patient_id is not None:
            if patient_id is None:
                patient_id = target.patient_id
            elif target.patient_id != patient_id and target.patient_id != wanted.patient_id:
                raise ValidationFailed.field(field, "belongs to another patient", code="link_patient_mismatch")
        if target.conversation_id is not None:
            if conversation_id is None:
                conversation_id = target.conversation_id
            elif target.conversation_id != conversation_id:
                raise ValidationFailed.field(field, "belongs to another conversation",
                                             code="link_conversation_mismatch")
    return Links(patient_id=patient_id, conversation_id=conversation_id, message_id=wanted.message_id,
                 ticket_id=wanted.ticket_id, intake_session_id=wanted.intake_session_id)


# --- blobs ---------------------------------------------------------------------------------------


async def _claim_blob(session: AsyncSession, org_id: uuid.UUID, sha256: str, size: int) -> MediaBlob:
    """The organisation's object for these bytes, created `pending` when new; locked for this transaction."""
    await session.execute(
        insert(MediaBlob)
        .values(id=uuid.uuid4(), org_id=org_id, sha256=sha256, size_bytes=size,
                storage_key=storage_adapter.new_key(org_id, sha256), state="pending",
                created_at=clock.now(), updated_at=clock.now())
        .on_conflict_do_nothing(index_elements=["org_id", "sha256"])
    )
    blob = await session.scalar(
        select(MediaBlob).where(MediaBlob.org_id == org_id, MediaBlob.sha256 == sha256)
        .with_for_update().execution_options(populate_existing=True)
    )
    assert blob is not None
    return blob


async def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking storage call in a thread; the store being unreachable is a 503."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except storage_adapter.StorageError as exc:
        if isinstance(exc, storage_adapter.ObjectMissing):
            raise
        log.warning("media.storage_unavailable", error=type(exc).__name__)
        raise Unavailable("The media store is unavailable; try again shortly", code="storage_unavailable",
                          headers={"Retry-After": "5"}) from None


def _digest_object(storage: Storage, key: str, limit: int) -> verification.Digest:
    """Hash an object chunk by chunk, stopping once it is past `limit` bytes (bounded memory)."""
    digest = verification.Digest()
    for chunk in storage.read_chunks(key):
        digest.update(chunk)
        if digest.size > limit:
            break
    return digest


# --- the upload flow -----------------------------------------------------------------------------


async def declare(session: AsyncSession, who: Principal, data: MediaCreate, store: MediaStore
                  ) -> tuple[Media, UploadTarget | None]:
    """Record a file about to be uploaded; its upload target, or None when the bytes are already stored."""
    try:
        kind = verification.kind_of(data.content_type)
        verification.check_size(kind, data.size_bytes, store.max_bytes)
        sha256 = verification.check_sha256(data.sha256)
    except verification.Rejected as exc:
        raise domain_error(exc) from None
    linked = await resolve_links(session, who.org_id, Links(
        patient_id=data.patient_id, conversation_id=data.conversation_id, message_id=data.message_id,
        ticket_id=data.ticket_id, intake_session_id=data.intake_session_id,
    ))
    blob = await _claim_blob(session, who.org_id, sha256, data.size_bytes)
    now = clock.now()
    media = Media(
        id=uuid.uuid4(), org_id=who.org_id, blob_id=blob.id,
        filename=verification.safe_filename(data.filename, kind), content_type=kind.content_type,
        size_bytes=data.size_bytes, sha256=sha256, status="pending", source="upload",
        patient_id=linked.patient_id, conversation_id=linked.conversation_id, message_id=linked.message_id,
        ticket_id=linked.ticket_id, intake_session_id=linked.intake_session_id, **_actor(who),
    )
    target: UploadTarget | None = None
    if blob.state == "stored":
        stored_kind = verification.KINDS.get(blob.content_type or "")
        if blob.size_bytes != data.size_bytes:
            raise ValidationFailed.field("size_bytes", "these bytes are already stored with another size",
                                         code="size_mismatch")
        if stored_kind is None or stored_kind.family != kind.family:
            label = stored_kind.label if stored_kind else "another type"
            raise ValidationFailed.field("content_type", f"these bytes are already stored as {label}",
                                         code="type_mismatch")
        media.status, media.deduplicated, media.verified_at = "available", True, now
        media.content_type = stored_kind.content_type
    else:
        target = await _run(store.storage.upload_target, blob.storage_key, content_type=kind.content_type,
                            size=data.size_bytes, sha256_hex=sha256, expires_in=store.upload_ttl_seconds)
    session.add(media)
    await session.flush()
    await audit.record(session, who, "create", "media", media.id, patient_id=media.patient_id,
                       details={"deduplicated": media.deduplicated, "content_type": media.content_type,
                                "size_bytes": media.size_bytes})
    if media.status == "available":
        await _publish_stored(session, media)
    log.info("media.declared", media_id=str(media.id), deduplicated=media.deduplicated)
    return media, target


async def complete(session: AsyncSession, who: Principal, media_id: uuid.UUID, store: MediaStore) -> Media:
    """Verify an upload. Idempotent: completing an available file returns it unchanged."""
    media = await _get(session, who.org_id, media_id, for_update=True)
    if media.status == "available":
        return media
    if media.status != "pending" or media.source != "upload" or media.blob_id is None:
        raise Conflict(f"Media {media_id} is {media.status}; only a pending upload can be completed",
                       code="media_not_pending")
    blob = await session.scalar(
        select(MediaBlob).where(MediaBlob.id == media.blob_id).with_for_update()
        .execution_options(populate_existing=True)
    )
    assert blob is not None
    if blob.state != "stored":
        kind = await _verify_object(store, blob.storage_key, declared_type=media.content_type,
                                    declared_size=media.size_bytes, declared_sha256=media.sha256)
        blob.state, blob.content_type, blob.size_bytes, blob.stored_at = "stored", kind.content_type, \
            media.size_bytes, clock.now()
        media.content_type = kind.content_type
    else:
        media.deduplicated = True
        media.content_type = blob.content_type or media.content_type
    media.status, media.verified_at = "available", clock.now()
    await session.flush()
    await audit.record(session, who, "update", "media", media.id, patient_id=media.patient_id,
                       details={"action": "complete", "deduplicated": media.deduplicated})
    await _publish_stored(session, media)
    return media


async def _verify_object(store: MediaStore, key: str, *, declared_type: str, declared_size: int | None,
                         declared_sha256: str | None) -> verification.FileKind:
    size = await _run(store.storage.size_of, key)
    if size is None:
        raise Conflict("Nothing was uploaded yet: PUT the bytes to the upload URL first", code="upload_missing")
    try:
        declared = verification.kind_of(declared_type)
        limit = verification.size_limit(declared, store.max_bytes)
        if size > limit:
            verification.check_size(declared, size, store.max_bytes, field="file")
        try:
            digest = await _run(_digest_object, store.storage, key, limit)
        except storage_adapter.ObjectMissing:
            raise Conflict("Nothing was uploaded yet: PUT the bytes to the upload URL first",
                           code="upload_missing") from None
        return verification.verify(declared_type=declared_type, declared_size=declared_size,
                                   declared_sha256=declared_sha256, digest=digest, cap=store.max_bytes)
    except verification.Rejected as exc:
        await _run(store.storage.delete, key)
        log.info("media.rejected", reason=exc.code)
        raise domain_error(exc) from None


async def _publish_stored(session: AsyncSession, media: Media) -> None:
    await events.publish(session, events.Event(
        type="media.stored", org_id=media.org_id,
        payload={"media_id": str(media.id), "patient_id": _str(media.patient_id),
                 "conversation_id": _str(media.conversation_id), "message_id": _str(media.message_id),
                 "ticket_id": _str(media.ticket_id), "intake_session_id": _str(media.intake_session_id),
                 "content_type": media.content_type, "source": media.source},
    ))


def _str(value: object | None) -> str | None:
    return str(value) if value is not None else None


# --- reading -------------------------------------------------------------------------------------


async def _get(session: AsyncSession, org_id: uuid.UUID, media_id: uuid.UUID, *, for_update: bool = False,
               include_deleted: bool = False) -> Media:
    stmt = select(Media).where(Media.org_id == org_id, Media.id == media_id)
    if not include_deleted:
        stmt = stmt.where(Media.deleted_at.is_(None))
    if for_update:
        stmt = stmt.with_for_update()
    media = await session.scalar(stmt)
    if media is None:
        raise _not_found(media_id)
    return media


async def get(session: AsyncSession, who: Principal, media_id: uuid.UUID) -> Media:
    """One media item of the caller's organisation (audited); 404 for another's or a deleted one."""
    media = await _get(session, who.org_id, media_id)
    await audit.record(session, who, "read", "media", media.id, patient_id=media.patient_id)
    return media


@dataclass(frozen=True)
class MediaFilters(Links):
    """The links to filter on, and the status and type."""

    status: str | None = None
    content_type: str | None = None


def _filtered(org_id: uuid.UUID, f: MediaFilters) -> Select[Any]:
    stmt = matching(select(Media).where(Media.org_id == org_id, Media.deleted_at.is_(None)), Media,
                    patient_id=f.patient_id, conversation_id=f.conversation_id, message_id=f.message_id,
                    ticket_id=f.ticket_id, intake_session_id=f.intake_session_id, status=f.status)
    if f.content_type is not None:
        stmt = stmt.where(Media.content_type == verification.canonical_type(f.content_type))
    return stmt.order_by(Media.created_at.desc(), Media.id)


async def list_media(session: AsyncSession, who: Principal, filters: MediaFilters, paging: PageParams
                     ) -> tuple[list[Media], int]:
    """The organisation's media, newest first; every id filtered on must name a row of the
    organisation (422 naming the field otherwise, as for any id in a request)."""
    await references.require(session, who.org_id, "patient", filters.patient_id, field="patient_id")
    for kind in links.KINDS:
        if (target_id := getattr(filters, f"{kind}_id")) is not None:
            await _link_target(session, who.org_id, kind, target_id)
    rows, total = await paginate(session, _filtered(who.org_id, filters), paging)
    for media in rows:
        await audit.record(session, who, "read", "media", media.id, patient_id=media.patient_id)
    return rows, total


async def list_patient_media(session: AsyncSession, who: Principal, patient_id: uuid.UUID, paging: PageParams,
                             *, status: str | None = None) -> tuple[list[Media], int]:
    """A patient's media, newest first; 404 when the patient is not the organisation's."""
    patient = await patients.get(session, who.org_id, patient_id)
    return await list_media(session, who, MediaFilters(patient_id=patient.id, status=status), paging)


async def download(session: AsyncSession, who: Principal, media_id: uuid.UUID, store: MediaStore, *,
                   purpose: str = "download") -> tuple[Media, DownloadTarget]:
    """A short-lived signed URL for the file; every one issued is audited."""
    media = await _get(session, who.org_id, media_id)
    return media, await _download_target(session, who, media, store, purpose=purpose)


async def _download_target(session: AsyncSession, who: Principal, media: Media, store: MediaStore, *,
                           purpose: str) -> DownloadTarget:
    if media.status != "available" or media.blob_id is None:
        raise Conflict(f"Media {media.id} is {media.status}, not available for download", code="media_not_available")
    blob = await session.get(MediaBlob, media.blob_id)
    assert blob is not None
    ttl = store.provider_ttl_seconds if purpose == "provider" else store.download_ttl_seconds
    target: DownloadTarget = await _run(store.storage.download_target, blob.storage_key, filename=media.filename,
                                        content_type=media.content_type, expires_in=ttl)
    await audit.record(session, who, "download_url", "media", media.id, patient_id=media.patient_id,
                       details={"purpose": purpose, "expires_at": target.expires_at.isoformat()})
    return target


async def urls_for_messages(session: AsyncSession, who: Principal, message_ids: Sequence[uuid.UUID],
                            store: MediaStore) -> dict[uuid.UUID, list[dict[str, Any]]]:
    """The stored attachments of these messages as `{url, content_type, media_id, status, filename}`,
    in their original order: our signed URL (audited) once stored and when the caller may read media;
    None while pending, when rejected, or without `media:read`. Messages without stored media are absent."""
    if not message_ids:
        return {}
    may_read = who.has("media:read")
    rows = (await session.scalars(
        select(Media).where(Media.org_id == who.org_id, Media.message_id.in_(list(message_ids)),
                            Media.deleted_at.is_(None))
        .order_by(Media.message_id, Media.position.nulls_last(), Media.created_at)
    )).all()
    result: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for media in rows:
        url = None
        if media.status == "available" and may_read:
            url = (await _download_target(session, who, media, store, purpose="message")).url
        assert media.message_id is not None
        result.setdefault(media.message_id, []).append({
            "url": url, "content_type": media.content_type, "media_id": str(media.id), "status": media.status,
            "filename": media.filename,
        })
    return result


async def _available(session: AsyncSession, org_id: uuid.UUID, media_id: uuid.UUID, field: str) -> Media:
    """An available, undeleted file of the organisation (422 naming `field` otherwise)."""
    media = await session.scalar(select(Media).where(
        Media.org_id == org_id, Media.id == media_id, Media.deleted_at.is_(None)))
    if media is None or media.status != "available":
        raise ValidationFailed.field(field, "no such available media in this organisation", code="unknown_media")
    return media


async def provider_urls(session: AsyncSession, who: Principal, media_ids: Iterable[uuid.UUID], store: MediaStore,
                        *, field: str = "media_ids") -> list[dict[str, Any]]:
    """Signed URLs a messaging provider fetches an outbound attachment from (422 naming the field when an
    id is not an available file of the organisation)."""
    found: list[dict[str, Any]] = []
    for index, media_id in enumerate(media_ids):
        media = await _available(session, who.org_id, media_id, f"{field}.{index}")
        target = await _download_target(session, who, media, store, purpose="provider")
        found.append({"url": target.url, "content_type": media.content_type, "media_id": str(media.id)})
    return found


# --- attachments received with messages (fetched by `media.fetch_inbound`, see inbound.py) -------

FETCH_JOB = "media.fetch_inbound"


@dataclass(frozen=True)
class Attachment:
    """One attachment of a received message: where the provider serves it and its declared type."""

    url: str
    content_type: str


async def attach_inbound(session: AsyncSession, who: Principal, *, message_id: uuid.UUID, patient_id: uuid.UUID | None,
                 source: str, provider: str, provider_message_id: str, attachments: Sequence[Attachment],
                 conversation_id: uuid.UUID | None = None) -> list[Media]:
    """Record a received message's attachments and queue their download (idempotent per position)."""
    recorded: list[Media] = []
    for position, item in enumerate(attachments):
        ref = f"{provider}:{provider_message_id}:{position}"[:200]
        declared = verification.canonical_type(item.content_type)[:100] or "application/octet-stream"
        kind = verification.KINDS.get(declared)
        media_id = uuid.uuid4()
        values = dict(
            id=media_id, org_id=who.org_id, filename=f"{source}-{position + 1}.{kind.extension if kind else 'bin'}",
            content_type=declared, size_bytes=0, status="pending", source=source, patient_id=patient_id,
            conversation_id=conversation_id, message_id=message_id, source_ref=ref, source_url=item.url[:2000],
            position=position, created_by_kind=who.kind, created_by_id=who.subject_id,
            created_at=clock.now(), updated_at=clock.now(),
        )
        if kind is None:  # not on the allowlist: never fetched
            values.update(status="rejected", failure_code="type_not_allowed",
                          failure_detail=f"{declared} is not an accepted file type"[:300], source_url=None)
        inserted = await session.scalar(
            insert(Media).values(**values)
            .on_conflict_do_nothing(index_elements=["org_id", "source_ref"], index_where=Media.source_ref.is_not(None))
            .returning(Media.id)
        )
        if inserted is None:
            continue
        if kind is not None:
            await jobs.defer(session, FETCH_JOB, org_id=str(who.org_id), media_id=str(media_id))
        media = await session.get(Media, media_id)
        assert media is not None
        recorded.append(media)
    if recorded:
        log.info("media.inbound_recorded", message_id=str(message_id), count=len(recorded))
    return recorded


async def attachable(session: AsyncSession, who: Principal, media_ids: Sequence[uuid.UUID], *,
                     patient_id: uuid.UUID, field: str = "media_ids") -> list[Media]:
    """Files that may go out with a message to this patient: available files of the organisation that
    belong to this patient or to no patient (422 naming `media_ids.<n>` otherwise — never another
    patient's file)."""
    found: list[Media] = []
    for index, media_id in enumerate(media_ids):
        media = await _available(session, who.org_id, media_id, f"{field}.{index}")
        if media.patient_id is not None and media.patient_id != patient_id:
            raise ValidationFailed.field(f"{field}.{index}", "belongs to another patient",
                                         code="media_of_another_patient")
        found.append(media)
    return found


async def link_conversation(session: AsyncSession, org_id: uuid.UUID, *, message_id: uuid.UUID,
                            conversation_id: uuid.UUID) -> int:
    """The message's media now also belong to its conversation (called when a message joins one)."""
    result = await session.execute(
        update(Media).where(Media.org_id == org_id, Media.message_id == message_id, Media.conversation_id.is_(None))
        .values(conversation_id=conversation_id).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


# --- deletion and retention ----------------------------------------------------------------------


async def delete(session: AsyncSession, who: Principal, media_id: uuid.UUID) -> None:
    """Soft delete: the file disappears from the API at once; its bytes go after the retention period."""
    media = await _get(session, who.org_id, media_id, for_update=True)
    media.deleted_at = clock.now()
    media.deleted_by_id = who.subject_id
    await audit.record(session, who, "delete", "media", media.id, patient_id=media.patient_id)


async def purge(session: AsyncSession, store: MediaStore, *, now: datetime | None = None, limit: int = 500) -> int:
    """Remove the bytes of files deleted longer ago than the retention period (when no live file uses
    the same bytes), and abandoned uploads (declared, never completed, past twice the URL lifetime).
    Returns how many media items were purged."""
    now = now or clock.now()
    deleted_before = now - timedelta(days=store.retention_days)
    abandoned_before = now - timedelta(seconds=2 * store.upload_ttl_seconds)
    due = (await session.scalars(
        select(Media).where(
            Media.purged_at.is_(None),
            or_(
                and_(Media.deleted_at.is_not(None), Media.deleted_at <= deleted_before),
                and_(Media.status == "pending", Media.source == "upload", Media.created_at <= abandoned_before),
            ),
        ).order_by(Media.created_at).limit(limit).with_for_update(skip_locked=True)
    )).all()
    blob_ids = {m.blob_id for m in due if m.blob_id is not None}
    for media in due:
        media.purged_at = now
        if media.deleted_at is None:
            media.deleted_at = now
        media.blob_id = None
    await session.flush()
    for blob_id in blob_ids:
        # lock first, then look: a declaration linking these bytes holds the lock until it commits
        blob = await session.scalar(select(MediaBlob).where(MediaBlob.id == blob_id).with_for_update(skip_locked=True))
        if blob is None or await session.scalar(select(exists().where(Media.blob_id == blob_id))):
            continue
        await _run(store.storage.delete, blob.storage_key)
        await session.delete(blob)
    await session.flush()
    if due:
        log.info("media.purged", count=len(due), objects=len(blob_ids))
    return len(due)


# --- the patient record --------------------------------------------------------------------------


@on_merge("media")
async def move_to_survivor(session: AsyncSession, org_id: uuid.UUID, duplicate_id: uuid.UUID,
                           survivor_id: uuid.UUID) -> int:
    return await reassign_patient(session, Media, org_id, duplicate_id, survivor_id)


timeline = rows_on_timeline(
    "media", Media, kind="media.added", summary=lambda m: f"{_label(m.content_type)} added ({m.source})",
    data=lambda m: {"content_type": m.content_type, "size_bytes": m.size_bytes},
    where=(Media.deleted_at.is_(None), Media.status == "available"),
)


def _label(content_type: str) -> str:
    kind = verification.KINDS.get(content_type)
    return kind.label if kind is not None else "File"

