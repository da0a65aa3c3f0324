"""Media API: declare → upload → complete, read, list, download URLs, delete; and the signed local-disk
URLs (`/media/local/...`), which authenticate by their HMAC signature instead of a credential."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse

from prm.adapters import storage as storage_adapter
from prm.context import get_context
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import BadRequest, DomainError, NotFound, PermissionDenied
from prm.core.pagination import Page, Paging
from prm.media import service
from prm.media.models import Media
from prm.media.schemas import DownloadUrl, MediaCreate, MediaRead, MediaUpload, Status, UploadInstructions

router = APIRouter(prefix="/media", tags=["media"])
patient_router = APIRouter(prefix="/patients", tags=["media"])
routers = [router, patient_router]


def _store(request: Request) -> service.MediaStore:
    return service.MediaStore.from_settings(get_context(request).settings)


def _read(media: Media) -> MediaRead:
    return MediaRead.model_validate(media)


# --- signed local-disk URLs (before /{media_id} routes) ------------------------------------------


def _local(request: Request) -> storage_adapter.LocalStorage:
    storage = storage_adapter.for_settings(get_context(request).settings)
    if not isinstance(storage, storage_adapter.LocalStorage):
        raise NotFound("Media is not stored on this server's disk", code="not_found")
    return storage


def _refused(exc: storage_adapter.UrlRefused) -> DomainError:
    if exc.status == 413:
        return service.PayloadTooLarge(exc.message, code=exc.code)
    if exc.status == 400:
        return BadRequest(exc.message, code=exc.code)
    return PermissionDenied(exc.message, code=exc.code)


@router.put(
    "/local/{folder}/{name}",
    status_code=200,
    response_class=Response,
    summary="Upload bytes to a signed local upload URL",
    description="The URL comes from `POST /media` (local storage). Send the bytes as the body with the "
    "`Content-Type` the URL was issued for; the size and SHA-256 must be the declared ones. "
    "No credential: the URL's signature authorises this one upload until it expires.",
    responses={200: {"description": "Stored"}, 400: {"description": "Size or checksum differ"},
               403: {"description": "Tampered, expired or wrong content type"},
               413: {"description": "Longer than declared"}},
)
async def local_upload(folder: str, name: str, request: Request) -> Response:
    storage = _local(request)
    try:
        grant = storage.verify("PUT", f"{folder}/{name}", dict(request.query_params))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and grant.size is not None and int(declared) > grant.size:
            raise storage_adapter.UrlRefused("too_large", f"More than the {grant.size} bytes the URL was issued for",
                                             status=413)
        await storage.receive(grant, request.headers.get("content-type"), request.stream())
    except storage_adapter.UrlRefused as exc:
        raise _refused(exc) from None
    return Response(status_code=200, headers={"ETag": f'"{grant.sha256_hex}"'})


@router.get(
    "/local/{folder}/{name}",
    response_class=FileResponse,
    summary="Download from a signed local download URL",
    description="The URL comes from `GET /media/{media_id}/download-url`. No credential: the signature "
    "authorises the download until it expires.",
    responses={200: {"description": "The file", "content": {"application/octet-stream": {}}},
               403: {"description": "Tampered or expired"}, 404: {"description": "No longer stored"}},
)
async def local_download(folder: str, name: str, request: Request) -> FileResponse:
    storage = _local(request)
    try:
        grant = storage.verify("GET", f"{folder}/{name}", dict(request.query_params))
    except storage_adapter.UrlRefused as exc:
        raise _refused(exc) from None
    path = storage.path(grant.key)
    if not path.is_file():
        raise NotFound("The file is no longer stored", code="media_not_found")
    return FileResponse(
        path, media_type=grant.content_type,
        headers={"Content-Disposition": storage_adapter.content_disposition(grant.filename or name),
                 "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox",
                 "Cache-Control": "private, no-store"},
    )


# --- the media API -------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=MediaUpload,
    summary="Declare a file and get its upload URL",
    description="Declare the filename, content type, exact size and SHA-256, and what the file belongs to "
    "(patient, conversation, message, ticket, intake session). Accepted types: PDF, JPEG, PNG, HEIC/HEIF, "
    "WEBP, WAV, MP3, OGG, M4A, DOCX, DICOM; each has a size limit (413 beyond it). The answer holds the "
    "URL to PUT the bytes to, with the headers to send; then call `POST /media/{id}/complete`. When the "
    "organisation already stores the same bytes, the file is linked to them at once: `deduplicated` is "
    "true, `upload` is null and the file is available.",
    responses={413: {"description": "Larger than the limit of its type"}},
)
async def declare(body: MediaCreate, request: Request, response: Response, session: Session,
                  who: Principal = Requires("media:write")) -> MediaUpload:
    media, target = await service.declare(session, who, body, _store(request))
    response.headers["Location"] = f"/media/{media.id}"
    upload = None
    if target is not None:
        upload = UploadInstructions(url=target.url, method="PUT", headers=target.headers, expires_at=target.expires_at)
    nxt = (f"PUT the bytes to upload.url, then POST /media/{media.id}/complete" if upload is not None
           else "Nothing to upload: the same bytes are already stored")
    return MediaUpload(media=_read(media), deduplicated=media.deduplicated, upload=upload, next=nxt)


@router.post(
    "/{media_id}/complete",
    response_model=MediaRead,
    summary="Verify an upload and make the file available",
    description="Checks what arrived: the size, the SHA-256 and the real type read from the first bytes, "
    "which must be the declared one and on the allowlist. On a mismatch the bytes are deleted and the "
    "answer is 422 naming the reason (`size_mismatch`, `checksum_mismatch`, `type_mismatch`, "
    "`type_not_allowed`, `unrecognised_content`), or 413 beyond the size limit; 409 `upload_missing` "
    "when nothing was uploaded. Completing an available file again returns it unchanged.",
    responses={413: {"description": "Larger than the limit of its type"}},
)
async def complete(media_id: uuid.UUID, request: Request, session: Session,
                   who: Principal = Requires("media:write")) -> MediaRead:
    return _read(await service.complete(session, who, media_id, _store(request)))


@router.get("", response_model=Page[MediaRead], summary="List media, newest first")
async def list_media(
    session: Session,
    paging: Paging,
    patient_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    message_id: uuid.UUID | None = None,
    ticket_id: uuid.UUID | None = None,
    intake_session_id: uuid.UUID | None = None,
    status: Status | None = None,
    content_type: Annotated[str | None, Query(max_length=100)] = None,
    who: Principal = Requires("media:read"),
) -> Page[MediaRead]:
    filters = service.MediaFilters(patient_id=patient_id, conversation_id=conversation_id, message_id=message_id,
                                   ticket_id=ticket_id, intake_session_id=intake_session_id, status=status,
                                   content_type=content_type)
    rows, total = await service.list_media(session, who, filters, paging)
    return Page[MediaRead](items=[_read(m) for m in rows], total=total, limit=paging.limit, offset=paging.offset)


@router.get("/{media_id}", response_model=MediaRead, summary="Read a media item")
async def get_media(media_id: uuid.UUID, session: Session, who: Principal = Requires("media:read")) -> MediaRead:
    return _read(await service.get(session, who, media_id))


@router.get(
    "/{media_id}/download-url",
    response_model=DownloadUrl,
    summary="A short-lived download URL (audited)",
    description="Every URL issued is recorded in the audit log. It expires after "
    "MEDIA_DOWNLOAD_URL_TTL_SECONDS; the download is named after the file and served as an attachment.",
)
async def download_url(media_id: uuid.UUID, request: Request, session: Session,
                       who: Principal = Requires("media:read")) -> DownloadUrl:
    media, target = await service.download(session, who, media_id, _store(request))
    return DownloadUrl(media_id=media.id, url=target.url, expires_at=target.expires_at, filename=media.filename,
                       content_type=media.content_type)


@router.delete(
    "/{media_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a media item",
    description="Gone from the API at once; the bytes are removed after MEDIA_RETENTION_DAYS (unless another "
    "file of the organisation has the same bytes).",
)
async def delete_media(media_id: uuid.UUID, session: Session, who: Principal = Requires("media:write")) -> Response:
    await service.delete(session, who, media_id)
    return Response(status_code=204)


@patient_router.get("/{patient_id}/media", response_model=Page[MediaRead], summary="A patient's media")
async def patient_media(
    patient_id: uuid.UUID, session: Session, paging: Paging, status: Status | None = None,
    who: Principal = Requires("media:read"),
) -> Page[MediaRead]:
    rows, total = await service.list_patient_media(session, who, patient_id, paging, status=status)
    return Page[MediaRead](items=[_read(m) for m in rows], total=total, limit=paging.limit, offset=paging.offset)
