"""Documentation and examples of media: declare, upload to a signed URL, complete, download
(see docs/api-examples.md and docs/media.md)."""

from __future__ import annotations

import hashlib

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = not_found("media", "media_not_found", "Media")
# A (tiny) PDF: the service accepts documents and images it can recognise, not plain text.
LETTER = (
    "%PDF-1.4\n1 0 obj <</Type /Catalog /Pages 2 0 R>> endobj\n"
    "2 0 obj <</Type /Pages /Kids [] /Count 0>> endobj\n"
    "% Referral letter: orthodontic assessment, lower incisors crowding\n"
    "trailer <</Root 1 0 R>>\n%%EOF\n"
)
LETTER_BYTES = LETTER.encode()
LETTER_SHA256 = hashlib.sha256(LETTER_BYTES).hexdigest()
DECLARE = {
    "filename": "referral-letter.pdf",
    "content_type": "application/pdf",
    "size_bytes": len(LETTER_BYTES),
    "sha256": LETTER_SHA256,
    "patient_id": ids.patient,
}
UPLOAD_QUERY = {
    "expires": ids.upload_expires,
    "content_type": "application/pdf",
    "size": str(len(LETTER_BYTES)),
    "sha256": LETTER_SHA256,
    "signature": ids.upload_signature,
}
DOWNLOAD_QUERY = {
    "expires": ids.download_expires,
    "content_type": "application/pdf",
    "filename": "referral-letter.pdf",
    "signature": ids.download_signature,
}
URL_REFUSED = Err(
    403,
    "invalid_signature",
    "The URL's signature does not match",
    "The URL was altered, or has expired (`url_expired`)",
)

OPERATIONS = {
    "POST /media": Op(
        "Declares a file (name, type, exact size and SHA-256) linked to a patient, conversation, message or "
        "ticket, and answers where to upload it: PUT the bytes to `upload.url`, then `POST "
        "/media/{media_id}/complete`. A file already stored (same SHA-256) is deduplicated: no upload needed.",
        body=DECLARE,
        errors=[
            Err(
                422,
                "unknown_patient",
                "patient_id: no such patient in this organisation",
                "A linked id names no row of the organisation",
            ),
            Err(413, "payload_too_large", "The file is larger than MEDIA_MAX_BYTES", "Too large to accept"),
        ],
    ),
    "GET /media": Op(
        "Media items, newest first, filtered by what they are linked to or their status.",
        query={"patient_id": ids.patient, "status": "available"},
        given=["media"],
    ),
    "POST /media/{media_id}/complete": Op(
        "Checks the uploaded bytes (size, SHA-256, real content type) and makes the item `available` (or "
        "`rejected` with a reason).",
        path={"media_id": ids.uploaded_media},
        errors=[
            Err(
                409,
                "upload_missing",
                "Nothing was uploaded yet: PUT the bytes to the upload URL first",
                "The bytes were not uploaded",
            ),
            Err(409, "media_not_pending", "Media is available, not pending", "Completed before"),
        ],
    ),
    "GET /media/{media_id}": Op("One media item with its status and links."),
    "DELETE /media/{media_id}": Op("Deletes the item; the stored bytes go when no other item uses them."),
    "GET /media/{media_id}/download-url": Op(
        "A short-lived signed URL to download the file (no credential needed to follow it).",
        errors=[
            Err(
                409,
                "media_not_available",
                "Media is pending, not available for download",
                "The item is not available (pending, rejected or deleted)",
            )
        ],
    ),
    "GET /patients/{patient_id}/media": Op(
        "A patient's media (documents, photos, voice notes), newest first, with their status.", given=["media"]
    ),
    "PUT /media/local/{folder}/{name}": Op(
        path={"folder": ids.upload_folder, "name": ids.upload_name},
        query=UPLOAD_QUERY,
        content=LETTER,
        content_type="application/pdf",
        response="",
        errors=[
            URL_REFUSED,
            Err(
                400,
                "checksum_mismatch",
                "The SHA-256 of the bytes is not the declared one",
                "Size or checksum differ from the declaration",
            ),
            Err(413, "too_large", "More than the 142 bytes the URL was issued for", "Longer than declared"),
        ],
    ),
    "GET /media/local/{folder}/{name}": Op(
        path={"folder": ids.download_folder, "name": ids.download_name},
        query=DOWNLOAD_QUERY,
        response=LETTER,
        errors=[URL_REFUSED, Err(404, "media_not_found", "The file is no longer stored", "The file was deleted")],
    ),
}
