"""What a stored file may be, and whether the bytes that arrived are what was declared. Pure: no I/O.

* The allowlist: PDF, JPEG, PNG, HEIC/HEIF, WEBP, WAV, MP3, OGG, M4A, DOCX, DICOM — each with its
  canonical content type, the aliases clients and providers use for it, a download extension and a
  size limit. Anything else (SVG and HTML can carry script; executables) is refused.
* The real type comes from the file's first bytes (`filetype`, pure Python), never from the name or
  the declared header, and it must be the declared one.
* `Digest` hashes a stream chunk by chunk (bounded memory) and keeps only the head for sniffing.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

import filetype

MiB = 1024 * 1024
HEAD_BYTES = 8192  # what `filetype` looks at
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FileKind:
    content_type: str  # canonical
    label: str
    extension: str
    max_bytes: int
    family: str  # types that are the same thing for the declared-vs-sniffed check (HEIC/HEIF)


KINDS: dict[str, FileKind] = {
    k.content_type: k
    for k in (
        FileKind("application/pdf", "PDF", "pdf", 50 * MiB, "pdf"),
        FileKind("image/jpeg", "JPEG", "jpg", 20 * MiB, "jpeg"),
        FileKind("image/png", "PNG", "png", 20 * MiB, "png"),
        FileKind("image/heic", "HEIC", "heic", 20 * MiB, "heif"),
        FileKind("image/heif", "HEIF", "heif", 20 * MiB, "heif"),
        FileKind("image/webp", "WEBP", "webp", 20 * MiB, "webp"),
        FileKind("audio/wav", "WAV", "wav", 100 * MiB, "wav"),
        FileKind("audio/mpeg", "MP3", "mp3", 100 * MiB, "mp3"),
        FileKind("audio/ogg", "OGG", "ogg", 100 * MiB, "ogg"),
        FileKind("audio/mp4", "M4A", "m4a", 100 * MiB, "m4a"),
        FileKind(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "DOCX", "docx", 25 * MiB,
            "docx",
        ),
        FileKind("application/dicom", "DICOM", "dcm", 200 * MiB, "dicom"),
    )
}

ALIASES: dict[str, str] = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/heic-sequence": "image/heic",
    "image/heif-sequence": "image/heif",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/mp3": "audio/mpeg",
    "audio/mpeg3": "audio/mpeg",
    "audio/x-mpeg-3": "audio/mpeg",
    "audio/opus": "audio/ogg",
    "application/ogg": "audio/ogg",
    "audio/m4a": "audio/mp4",
    "audio/x-m4a": "audio/mp4",
    "audio/aac-mp4": "audio/mp4",
    "application/dicom+dcm": "application/dicom",
}

# what `filetype` answers, mapped to our canonical types (the rest is not on the allowlist)
SNIFFED: dict[str, str] = {
    "application/pdf": "application/pdf",
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/heic": "image/heic",
    "image/heif": "image/heif",
    "image/webp": "image/webp",
    "audio/x-wav": "audio/wav",
    "audio/wav": "audio/wav",
    "audio/mpeg": "audio/mpeg",
    "audio/ogg": "audio/ogg",
    "audio/mp4": "audio/mp4",
    "audio/m4a": "audio/mp4",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": KINDS[
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    ].content_type,
    "application/dicom": "application/dicom",
}


class Rejected(Exception):
    """The file cannot be accepted. `code` is stable; `status` is 422, or 413 when it is too large."""

    def __init__(self, code: str, message: str, *, field: str = "file", status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


def allowed_labels() -> str:
    return ", ".join(dict.fromkeys(k.label for k in KINDS.values()))


def canonical_type(content_type: str) -> str:
    """`Image/JPG; charset=x` → `image/jpeg`: lower case, parameters dropped, aliases resolved."""
    base = content_type.split(";", 1)[0].strip().lower()
    return ALIASES.get(base, base)


def kind_of(content_type: str, *, field: str = "content_type") -> FileKind:
    """The allowlisted kind of a declared content type, or `Rejected(type_not_allowed)`."""
    kind = KINDS.get(canonical_type(content_type))
    if kind is None:
        raise Rejected(
            "type_not_allowed",
            f"{content_type[:100]!r} is not an accepted file type (accepted: {allowed_labels()})",
            field=field,
        )
    return kind


def size_limit(kind: FileKind, cap: int) -> int:
    return min(kind.max_bytes, cap)


def check_size(kind: FileKind, size: int, cap: int, *, field: str = "size_bytes") -> None:
    limit = size_limit(kind, cap)
    if size > limit:
        raise Rejected(
            "file_too_large", f"{kind.label} files may be at most {limit} bytes; this one is {size}",
            field=field, status=413,
        )


def check_sha256(value: str, *, field: str = "sha256") -> str:
    digest = value.strip().lower()
    if not SHA256_HEX.fullmatch(digest):
        raise Rejected("invalid_checksum", "must be the SHA-256 of the file as 64 hexadecimal digits", field=field)
    return digest


HEIF_BRANDS = {"heic", "heix", "heim", "heis", "hevc", "hevx", "hevm", "hevs", "mif1", "msf1"}


def sniff(head: bytes) -> str | None:
    """The canonical type the first bytes show, `filetype`'s own answer when not allowlisted, or None."""
    guess = filetype.guess(head)
    if guess is None:
        # `filetype` knows HEIC by its `heic` brand only; other HEIF brands (heix, hevc, mif1 ...) are HEIF
        if len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12].decode("latin-1") in HEIF_BRANDS:
            return "image/heif"
        return None
    return SNIFFED.get(guess.mime, guess.mime)


class Digest:
    """SHA-256, size and the first bytes of a stream, fed chunk by chunk."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._head = bytearray()
        self.size = 0

    def update(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.size += len(chunk)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[: HEAD_BYTES - len(self._head)]

    @property
    def head(self) -> bytes:
        return bytes(self._head)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def verify(*, declared_type: str, declared_size: int | None, declared_sha256: str | None, digest: Digest,
           cap: int) -> FileKind:
    """Check what arrived against what was declared; the verified kind, or `Rejected` naming the reason.

    Order: size (413 beyond the limit of the declared type), SHA-256, then the sniffed type — it
    must be recognised, on the allowlist, within its own limit, and the declared type.
    """
    declared = kind_of(declared_type)
    if digest.size > size_limit(declared, cap):
        check_size(declared, digest.size, cap, field="file")
    if declared_size is not None and digest.size != declared_size:
        raise Rejected("size_mismatch", f"{digest.size} bytes arrived, {declared_size} were declared")
    if declared_sha256 is not None and digest.hexdigest() != declared_sha256:
        raise Rejected("checksum_mismatch", "the SHA-256 of the bytes that arrived is not the declared one")
    sniffed = sniff(digest.head)
    if sniffed is None:
        raise Rejected("unrecognised_content", f"the content is not a recognisable file of an accepted type "
                                               f"({allowed_labels()})")
    actual = KINDS.get(sniffed)
    if actual is None:
        raise Rejected("type_not_allowed", f"the content is {sniffed}, which is not an accepted file type")
    if actual.family != declared.family:
        raise Rejected("type_mismatch", f"declared as {declared.label} but the content is {actual.label}")
    check_size(actual, digest.size, cap, field="file")
    return actual


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


def safe_filename(name: str, kind: FileKind) -> str:
    """A filename fit for `Content-Disposition`: no path, no control or quoting characters, at most
    120 characters, and the extension of the verified type (so `invoice.html` served as a PDF is
    saved as `invoice.html.pdf`, never opened as HTML)."""
    base = unicodedata.normalize("NFC", name).replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip(" .") or "file"
    stem, dot, ext = base.rpartition(".")
    extensions = {k.extension for k in KINDS.values() if k.family == kind.family} | (
        {"jpeg"} if kind.family == "jpeg" else set())
    if dot and stem and ext.lower() in extensions:
        suffix = "." + ext
    else:
        stem, suffix = base, "." + kind.extension
    return stem[: 120 - len(suffix)] + suffix
