"""`Idempotency-Key` on POST: the first response is stored and replayed for 24 hours.

A pure ASGI middleware, so it works for every POST route without code in the routers:

* the key is scoped to the credential that sent it (a hash of the Authorization / X-API-Key
  header), so two clients cannot collide or read each other's responses;
* the first request claims the key in its own committed row before the route runs; a concurrent
  duplicate gets 409 `idempotency_in_progress`, a later one gets the stored response replayed with
  `Idempotent-Replayed: true`;
* reusing a key with a different method, path or body gets 422 `idempotency_key_reused`;
* a 5xx response releases the key so the client can retry;
* a response marked `Cache-Control: no-store` (one that carries a secret, such as a new API key)
  is never stored: repeating its key gets 409 `idempotency_not_replayable`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import LargeBinary, String, delete, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prm.core import clock, jobs
from prm.core.errors import Conflict, DomainError, ValidationFailed
from prm.core.models import Base

HEADER = b"idempotency-key"
MAX_KEY_LENGTH = 255


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


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value)
    return None


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, ttl: timedelta = timedelta(hours=24)) -> None:
        self.app = app
        self.ttl = ttl

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or _header(scope, HEADER) is None:
            await self.app(scope, receive, send)
            return
        key = (_header(scope, HEADER) or b"").decode("latin-1").strip()
        if not key or len(key) > MAX_KEY_LENGTH:
            await _send_problem(send, ValidationFailed.field(
                "Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters", code="invalid_idempotency_key"))
            return

        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)

        credential = _header(scope, b"authorization") or _header(scope, b"x-api-key")
        client = scope.get("client") or ("", 0)
        owner = credential or f"anonymous:{client[0]}".encode()
        cred_scope = hashlib.sha256(owner).hexdigest()
        fingerprint = hashlib.sha256(
            scope["method"].encode() + b" " + scope["path"].encode() + b"\n" + body
        ).hexdigest()

        db = scope["app"].state.db
        now = clock.now()
        async with db.sessionmaker() as session:
            claimed = await _claim(session, cred_scope, key, fingerprint, now, now + self.ttl)
            if not claimed:
                row = await session.get(IdempotencyRecord, (cred_scope, key))
                await session.commit()
                if row is None:  # expired between the two statements: let the client retry
                    await _send_problem(send, Conflict("Idempotency key is being reset; retry",
                                                       code="idempotency_in_progress"))
                    return
                if row.fingerprint != fingerprint:
                    await _send_problem(send, ValidationFailed.field(
                        "Idempotency-Key", "was already used with a different request",
                        code="idempotency_key_reused"))
                    return
                if row.state == "processing":
                    await _send_problem(send, Conflict(
                        "A request with this Idempotency-Key is still being processed",
                        code="idempotency_in_progress"))
                    return
                if row.state == "unreplayable":
                    await _send_problem(send, Conflict(
                        "This Idempotency-Key was used for a request whose response cannot be replayed "
                        "(it contained a secret)", code="idempotency_not_replayable"))
                    return
                headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in row.response_headers or []]
                headers.append((b"idempotent-replayed", b"true"))
                await send({"type": "http.response.start", "status": row.response_status, "headers": headers})
                await send({"type": "http.response.body", "body": row.response_body or b""})
                return

        captured: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
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
            elif message["type"] == "http.response.body":
                captured["body"] += message.get("body", b"")
            await send(message)

        try:
            await self.app(scope, replay_receive, capture_send)
        finally:
            async with db.sessionmaker() as session:
                if captured["status"] >= 500:
                    await session.execute(delete(IdempotencyRecord).where(
                        IdempotencyRecord.scope == cred_scope, IdempotencyRecord.key == key))
                else:
                    row = await session.get(IdempotencyRecord, (cred_scope, key))
                    no_store = any(k.lower() == "cache-control" and "no-store" in v.lower()
                                   for k, v in captured["headers"])
                    if row is not None and no_store:
                        row.state = "unreplayable"
                        row.response_status = captured["status"]
                    elif row is not None:
                        row.state = "done"
                        row.response_status = captured["status"]
                        row.response_headers = captured["headers"]
                        row.response_body = captured["body"]
                await session.commit()


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
