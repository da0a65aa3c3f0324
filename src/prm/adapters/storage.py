"""Object storage for media, behind one small interface with two implementations.

* `LocalStorage` (the default): files under `PRM_DATA_DIR/media`, uploaded and downloaded through
  this API with HMAC-SHA256-signed, expiring URLs (`/media/local/<key>?...&signature=`). The
  signature binds the method, the key, the expiry and — for an upload — the content type, size and
  SHA-256, so a URL cannot be reused for other bytes; `receive` streams the body to disk and refuses
  anything longer than signed or with another digest (as S3 does with a signed checksum).
* `S3Storage`: any S3-compatible endpoint (AWS, MinIO) with `boto3`. The presigned PUT signs
  `Content-Type`, `Content-Length` and `x-amz-checksum-sha256`, so S3 itself refuses other bytes;
  the presigned GET is short-lived and names the download's filename and type.

The methods are synchronous (boto3 is); async callers run them in a thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol
from urllib.parse import quote, urlencode

import anyio

from prm.core import clock
from prm.settings import Settings

CHUNK_BYTES = 1024 * 1024
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")
LOCAL_ROUTE = "/media/local/"


class StorageError(Exception):
    """The store could not be reached or refused an operation (transient: retry)."""


class ObjectMissing(StorageError):
    """No object under that key."""


class UrlRefused(Exception):
    """A local signed URL that is tampered with, expired, or used for other bytes than it signs."""

    def __init__(self, code: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class UploadTarget:
    url: str
    method: str
    headers: dict[str, str]
    expires_at: datetime


@dataclass(frozen=True)
class DownloadTarget:
    url: str
    expires_at: datetime


class Storage(Protocol):
    backend: str

    def upload_target(self, key: str, *, content_type: str, size: int, sha256_hex: str,
                      expires_in: int) -> UploadTarget: ...

    def download_target(self, key: str, *, filename: str, content_type: str, expires_in: int) -> DownloadTarget: ...

    def size_of(self, key: str) -> int | None: ...

    def read_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]: ...

    def write(self, key: str, source: BinaryIO, *, content_type: str, size: int, sha256_hex: str) -> None: ...

    def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    if len(key) > 512 or not KEY_PATTERN.fullmatch(key) or ".." in key:
        raise ValueError("invalid storage key")
    return key


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the RFC 6266 UTF-8 form of the name."""
    ascii_name = filename.encode("ascii", "replace").decode().replace("?", "_").replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _expiry(expires_in: int) -> datetime:
    return (clock.now() + timedelta(seconds=expires_in)).replace(microsecond=0)


# --- local disk ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalGrant:
    """What a verified local URL allows."""

    key: str
    expires: int
    content_type: str
    size: int | None = None
    sha256_hex: str | None = None
    filename: str | None = None


@dataclass
class LocalStorage:
    root: Path
    secret: bytes
    base_url: str
    backend: str = field(default="local", init=False)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    # signing ------------------------------------------------------------------------------------
    def _signature(self, method: str, fields: dict[str, str]) -> str:
        message = "\n".join([method, *(f"{k}={fields[k]}" for k in sorted(fields))])
        return hmac.new(self.secret, message.encode(), hashlib.sha256).hexdigest()

    def _url(self, method: str, key: str, fields: dict[str, str]) -> str:
        signed = {**fields, "key": key}
        query = urlencode({**fields, "signature": self._signature(method, signed)})
        return f"{self.base_url.rstrip('/')}{LOCAL_ROUTE}{quote(key)}?{query}"

    def upload_target(self, key: str, *, content_type: str, size: int, sha256_hex: str,
                      expires_in: int) -> UploadTarget:
        expires_at = _expiry(expires_in)
        fields = {"expires": str(int(expires_at.timestamp())), "content_type": content_type, "size": str(size),
                  "sha256": sha256_hex}
        return UploadTarget(url=self._url("PUT", check_key(key), fields), method="PUT",
                            headers={"Content-Type": content_type}, expires_at=expires_at)

    def download_target(self, key: str, *, filename: str, content_type: str, expires_in: int) -> DownloadTarget:
        expires_at = _expiry(expires_in)
        fields = {"expires": str(int(expires_at.timestamp())), "content_type": content_type, "filename": filename}
        return DownloadTarget(url=self._url("GET", check_key(key), fields), expires_at=expires_at)

    def verify(self, method: str, key: str, query: dict[str, str]) -> LocalGrant:
        """The grant a signed URL carries, or `UrlRefused` (tampered, expired, malformed)."""
        try:
            check_key(key)
        except ValueError:
            raise UrlRefused("invalid_signature", "The URL is not a valid signed media URL") from None
        names = ("expires", "content_type", "size", "sha256") if method == "PUT" else \
            ("expires", "content_type", "filename")
        if any(n not in query for n in (*names, "signature")):
            raise UrlRefused("invalid_signature", "The URL is not a valid signed media URL")
        fields = {n: query[n] for n in names}
        expected = self._signature(method, {**fields, "key": key})
        if not hmac.compare_digest(expected, query["signature"]):
            raise UrlRefused("invalid_signature", "The URL's signature does not match")
        expires = int(fields["expires"])
        if clock.now().timestamp() > expires:
            raise UrlRefused("url_expired", "The URL has expired; ask for a new one")
        return LocalGrant(
            key=key, expires=expires, content_type=fields["content_type"],
            size=int(fields["size"]) if "size" in fields else None, sha256_hex=fields.get("sha256"),
            filename=fields.get("filename"),
        )

    async def receive(self, grant: LocalGrant, content_type: str | None, body: AsyncIterator[bytes]) -> None:
        """Store an upload made to a verified URL: the signed type, at most the signed size, the
        signed digest; written to a temporary file and moved into place only when all of it holds."""
        if (content_type or "").strip().lower() != grant.content_type.lower():
            raise UrlRefused("content_type_mismatch", "Content-Type must be the one the upload URL was issued for")
        assert grant.size is not None and grant.sha256_hex is not None
        target = self.path(grant.key)
        await anyio.to_thread.run_sync(lambda: target.parent.mkdir(parents=True, exist_ok=True))
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        os.close(fd)
        sha = hashlib.sha256()
        size = 0
        try:
            async with await anyio.open_file(tmp_name, "wb") as out:
                async for chunk in body:
                    size += len(chunk)
                    if size > grant.size:
                        raise UrlRefused("too_large", f"More than the {grant.size} bytes the URL was issued for",
                                         status=413)
                    sha.update(chunk)
                    await out.write(chunk)
            if size != grant.size:
                raise UrlRefused("size_mismatch", f"{size} bytes arrived, the URL was issued for {grant.size}",
                                 status=400)
            if sha.hexdigest() != grant.sha256_hex:
                raise UrlRefused("checksum_mismatch", "The SHA-256 of the body is not the one the URL was issued for",
                                 status=400)
            await anyio.to_thread.run_sync(os.replace, tmp_name, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    # objects ------------------------------------------------------------------------------------
    def size_of(self, key: str) -> int | None:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def read_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            handle = self.path(key).open("rb")
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        with handle:
            while chunk := handle.read(chunk_size):
                yield chunk

    def write(self, key: str, source: BinaryIO, *, content_type: str, size: int, sha256_hex: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".write-")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK_BYTES):
                    out.write(chunk)
            os.replace(tmp_name, target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()


# --- S3-compatible -------------------------------------------------------------------------------


@dataclass
class S3Storage:
    client: Any
    bucket: str
    backend: str = field(default="s3", init=False)

    @classmethod
    def connect(cls, *, bucket: str, endpoint_url: str | None = None, region: str = "us-east-1",
                access_key_id: str | None = None, secret_access_key: str | None = None) -> S3Storage:
        import boto3
        from botocore.config import Config

        config = Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"max_attempts": 3, "mode": "standard"},
        )
        client = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region, aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key, config=config,
        )
        return cls(client=client, bucket=bucket)

    @staticmethod
    def checksum(sha256_hex: str) -> str:
        """S3's `x-amz-checksum-sha256`: the digest in base64."""
        return base64.b64encode(bytes.fromhex(sha256_hex)).decode()

    def upload_target(self, key: str, *, content_type: str, size: int, sha256_hex: str,
                      expires_in: int) -> UploadTarget:
        checksum = self.checksum(sha256_hex)
        url = self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": check_key(key), "ContentType": content_type, "ContentLength": size,
                    "ChecksumSHA256": checksum},
            ExpiresIn=expires_in,
        )
        return UploadTarget(
            url=url, method="PUT",
            headers={"Content-Type": content_type, "Content-Length": str(size), "x-amz-checksum-sha256": checksum},
            expires_at=_expiry(expires_in),
        )

    def download_target(self, key: str, *, filename: str, content_type: str, expires_in: int) -> DownloadTarget:
        url = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": check_key(key), "ResponseContentType": content_type,
                    "ResponseContentDisposition": content_disposition(filename)},
            ExpiresIn=expires_in,
        )
        return DownloadTarget(url=url, expires_at=_expiry(expires_in))

    def _missing(self, exc: Exception) -> bool:
        response = getattr(exc, "response", None) or {}
        code = str(response.get("Error", {}).get("Code", ""))
        return code in {"404", "NoSuchKey", "NotFound"}

    def size_of(self, key: str) -> int | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if self._missing(exc):
                return None
            raise StorageError(f"S3 head_object failed: {type(exc).__name__}") from None
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {type(exc).__name__}") from None
        return int(head["ContentLength"])

    def read_chunks(self, key: str, chunk_size: int = CHUNK_BYTES) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]
        except ClientError as exc:
            if self._missing(exc):
                raise ObjectMissing(key) from None
            raise StorageError(f"S3 get_object failed: {type(exc).__name__}") from None
        except BotoCoreError as exc:
            raise StorageError(f"S3 unreachable: {type(exc).__name__}") from None
        try:
            yield from body.iter_chunks(chunk_size)
        finally:
            body.close()

    def write(self, key: str, source: BinaryIO, *, content_type: str, size: int, sha256_hex: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=check_key(key), Body=source, ContentType=content_type,
                                   ContentLength=size, ChecksumSHA256=self.checksum(sha256_hex))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 put_object failed: {type(exc).__name__}") from None

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.delete_object(Bucket=self.bucket, Key=check_key(key))
        except (ClientError, BotoCoreError) as exc:
            raise StorageError(f"S3 delete_object failed: {type(exc).__name__}") from None


# --- built from settings -------------------------------------------------------------------------

MAX_BUILT = 16
_built: dict[int, tuple[Settings, Storage]] = {}
_lock = threading.Lock()


def url_secret(settings: Settings) -> bytes:
    """The key of local media URLs, derived from SECRET_KEY (never the signing key of tokens itself)."""
    return hmac.new(settings.jwt_secret().encode(), b"prm.media.local-urls.v1", hashlib.sha256).digest()


def build(settings: Settings) -> Storage:
    if settings.media_storage == "s3":
        if not settings.media_s3_bucket:
            raise RuntimeError("MEDIA_STORAGE=s3 needs MEDIA_S3_BUCKET")
        secret = settings.media_s3_secret_access_key
        return S3Storage.connect(
            bucket=settings.media_s3_bucket, endpoint_url=settings.media_s3_endpoint_url,
            region=settings.media_s3_region, access_key_id=settings.media_s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    return LocalStorage(root=settings.data_dir / "media", secret=url_secret(settings),
                        base_url=settings.public_base_url)


def for_settings(settings: Settings) -> Storage:
    """The storage these settings describe, built once per settings object."""
    with _lock:
        entry = _built.get(id(settings))
        if entry is None or entry[0] is not settings:
            entry = (settings, build(settings))
            _built[id(settings)] = entry
            while len(_built) > MAX_BUILT:  # a process has one or two; tests make many
                _built.pop(next(iter(_built)))
        return entry[1]


def new_key(org_id: uuid.UUID, sha256_hex: str) -> str:
    """Objects are named by organisation and content: the same bytes are one object per organisation."""
    return f"{org_id}/{sha256_hex}"
