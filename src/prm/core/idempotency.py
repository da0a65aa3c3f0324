"""`Idempotency-Key` on POST: the first response is stored and replayed for `IDEMPOTENCY_TTL_HOURS`.

Two halves, so that nothing is stored for a caller who is not authenticated:

* `IdempotencyMiddleware` (pure ASGI) checks the header, reads the body (at most
  `IDEMPOTENCY_MAX_BODY_BYTES`, else 413) to fingerprint it, and leaves a `Pending` request in the
  request state. After the route, if the request was claimed, it stores the response (or frees
  the key on a 5xx).
* `claim(request, principal)`, called by `prm.core.auth.Requires` once the caller is authenticated
  and authorised, claims the key in its own committed row. The row is scoped to the credential
  (organisation + user or API key id), so another credential of the same or another organisation
  using the same key never gets the stored response. A concurrent duplicate gets 409
  `idempotency_in_progress`, a later one gets the stored response replayed with
  `Idempotent-Replayed: true`; reusing a key with a different method, path or body gets 422
  `idempotency_key_reused`.

Unauthenticated requests (and public routes, which take no credential) are passed through and never
stored. A response marked `Cache-Control: no-store` (one that carries a secret, such as a new API
key) or larger than `IDEMPOTENCY_MAX_BODY_BYTES` is never stored: repeating its key gets 409
`idempotency_not_replayable`. Stored responses can hold patient data: they are deleted when they
expire, by the hourly `idempotency.purge` job (and when their key is claimed again).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import LargeBinary, String, delete, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prm.core import clock, jobs
from prm.core.errors import Conflict, DomainError, ValidationFailed
from prm.core.models import Base

if TYPE_CHECKING:
    from prm.core.auth import Principal

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
STATE_KEY = "idempotency"


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # processing | done | unreplayable
    response_status: Mapped[int | None]
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


@dataclass
class Pending:
    """A POST with an Idempotency-Key, waiting for its caller to be authenticated."""

    key: str
    fingerprint: str
    ttl: timedelta
    claimed_scope: str | None = None


class Replay(Exception):
    """Raised by `claim` when the key was used before: the handler answers with the stored response."""

    def __init__(self, status: int, headers: list[list[str]], body: bytes) -> None:
        super().__init__("idempotent replay")
        self.status = status
        self.headers = headers
        self.body = body


async def replay_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Replay)
    response = Response(exc.body, status_code=exc.status)
    response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers
                            if k.lower() != "content-length"]
    response.raw_headers += [(b"content-length", str(len(exc.body)).encode()), (b"idempotent-replayed", b"true")]
    return response


def credential_scope(principal: Principal) -> str:
    """The row's scope: one credential (user or API key) of one organisation."""
    return hashlib.sha256(f"{principal.org_id}|{principal.credential}".encode()).hexdigest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


async def claim(request: Request, principal: Principal) -> None:
    """Claim this request's Idempotency-Key for an authenticated caller (no-op without one).

    Raises `Replay` with the stored response for a repeat, or a 409/422 problem."""
    pending: Pending | None = getattr(request.state, STATE_KEY, None)
    if pending is None or pending.claimed_scope is not None or principal.kind == "system":
        return
    cred_scope = credential_scope(principal)
    db = request.app.state.db
    now = clock.now()
    async with db.sessionmaker() as session:
        if await _claim(session, cred_scope, pending.key, pending.fingerprint, now, now + pending.ttl):
            pending.claimed_scope = cred_scope
            return
        row = await session.get(IdempotencyRecord, (cred_scope, pending.key))
        await session.commit()
    if row is None:  # expired between the two statements: let the client retry
        raise Conflict("Idempotency key is being reset; retry", code="idempotency_in_progress")
    if row.fingerprint != pending.fingerprint:
        raise ValidationFailed.field("Idempotency-Key", "was already used with a different request",
                                     code="idempotency_key_reused")
    if row.state == "processing":
        raise Conflict("A request with this Idempotency-Key is still being processed",
                       code="idempotency_in_progress")
    if row.state == "unreplayable":
        raise Conflict("This Idempotency-Key was used for a request whose response was not stored (it "
                       "contained a secret, or was too large to keep)", code="idempotency_not_replayable")
    raise Replay(row.response_status or 200, row.response_headers or [], row.response_body or b"")


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, ttl: timedelta = timedelta(hours=24),
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.ttl = ttl
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _header(scope, HEADER) is None:
            await self.app(scope, receive, send)
            return
        key = (_header(scope, HEADER) or b"").decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            await _send_problem(send, ValidationFailed.field(
                "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key"))
            return

        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _send_problem(send, PayloadTooLarge(
                    f"A request with an Idempotency-Key may have a body of at most {self.max_body_bytes} bytes",
                    code="idempotency_body_too_large",
                    errors=[{"field": "body", "message": f"at most {self.max_body_bytes} bytes with an "
                             "Idempotency-Key", "type": "idempotency_body_too_large"}]))
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)

        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()
        pending = Pending(key=key, fingerprint=fingerprint, ttl=self.ttl)
        scope.setdefault("state", {})[STATE_KEY] = pending

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": [], "size": 0}
        delivered = False

        async def replay_receive() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])
                    if k.lower() not in (b"content-length", b"set-cookie", b"date", b"server")
                ]
            elif message["type"] == "http.response.body" and pending.claimed_scope is not None:
                chunk = message.get("body", b"")
                captured["size"] += len(chunk)
                if captured["size"] <= self.max_body_bytes:
                    captured["body"].append(chunk)
            await send(message)

        try:
            await self.app(scope, replay_receive, capture_send)
        finally:
            if pending.claimed_scope is not None:
                await _finish(scope["app"].state.db, pending, captured, self.max_body_bytes)


async def _finish(db: Any, pending: Pending, captured: dict[str, Any], max_body_bytes: int) -> None:
    cred_scope = pending.claimed_scope
    async with db.sessionmaker() as session:
        if captured["status"] >= 500:
            await session.execute(delete(IdempotencyRecord).where(
                IdempotencyRecord.scope == cred_scope, IdempotencyRecord.key == pending.key))
        else:
            row = await session.get(IdempotencyRecord, (cred_scope, pending.key))
            no_store = any(k.lower() == "cache-control" and "no-store" in v.lower()
                           for k, v in captured["headers"])
            if row is not None and (no_store or captured["size"] > max_body_bytes):
                row.state = "unreplayable"
                row.response_status = captured["status"]
            elif row is not None:
                row.state = "done"
                row.response_status = captured["status"]
                row.response_headers = captured["headers"]
                row.response_body = b"".join(captured["body"])
        await session.commit()


class PayloadTooLarge(DomainError):
    status = 413
    default_code = "payload_too_large"
    title = "Payload too large"


async def _claim(session: AsyncSession, scope: str, key: str, fingerprint: str,
                 now: datetime, expires_at: datetime) -> bool:
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key, IdempotencyRecord.expires_at <= now
        )
    )
    result = await session.execute(
        text(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, state, created_at, expires_at) "
            "VALUES (:scope, :key, :fp, 'processing', :now, :exp) ON CONFLICT DO NOTHING RETURNING key"
        ),
        {"scope": scope, "key": key, "fp": fingerprint, "now": now, "exp": expires_at},
    )
    claimed = result.scalar_one_or_none() is not None
    await session.commit()
    return claimed


async def _send_problem(send: Send, error: DomainError) -> None:
    payload = json.dumps(error.problem()).encode()
    await send({
        "type": "http.response.start",
        "status": error.status,
        "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(payload)).encode())],
    })
    await send({"type": "http.response.body", "body": payload})


@jobs.job("idempotency.purge", periodic="17 * * * *")
async def purge_expired(session: AsyncSession, timestamp: int | None = None) -> int:
    result = await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= clock.now()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
