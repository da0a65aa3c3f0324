"""EHR connections: create (a new signing key for SMART), read, update (key rotation), delete, and
the JWKS that publishes every SMART connection's public key."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, references
from prm.core.auth import Principal
from prm.core.errors import NotFound, ValidationFailed
from prm.fhir import smart
from prm.fhir.models import EhrConnection
from prm.fhir.schemas import ConnectionCreate, ConnectionRead, ConnectionUpdate
from prm.integrations import service as integrations
from prm.settings import Settings

JWKS_PATH = "/.well-known/jwks.json"


@references.resolver("fhir_connection")
async def _exists(session: AsyncSession, org_id: uuid.UUID, connection_id: uuid.UUID) -> bool:
    return await session.scalar(select(EhrConnection.id).where(
        EhrConnection.id == connection_id, EhrConnection.org_id == org_id)) is not None


async def _checked(url: str, settings: Settings, field: str) -> str:
    try:
        await integrations.check_url(url, allow_private=settings.outbound_allow_private_targets)
    except integrations.UnsafeTarget as exc:
        # A name that does not resolve from here yet (an EHR reachable only from production DNS or
        # a VPN) is accepted: every call checks the URL again and fails the run if it is unsafe then.
        if str(exc) != "does not resolve":
            raise ValidationFailed.field(field, f"{url!r} {exc}", code="unsafe_url") from None
    return url


def read_model(connection: EhrConnection, settings: Settings) -> ConnectionRead:
    read = ConnectionRead.model_validate(connection)
    return read.model_copy(update={"jwks_url": settings.public_base_url.rstrip("/") + JWKS_PATH,
                                   "has_bearer_token": connection.bearer_token is not None})


async def create(session: AsyncSession, who: Principal, data: ConnectionCreate, settings: Settings) -> EhrConnection:
    await _checked(data.base_url, settings, "base_url")
    if data.token_url:
        await _checked(data.token_url, settings, "token_url")
    connection = EhrConnection(
        id=uuid.uuid4(), org_id=who.org_id, name=data.name, base_url=data.base_url, server_family=data.server_family,
        auth=data.auth, token_url=data.token_url, client_id=data.client_id, scope=data.scope,
        signing_alg=data.signing_alg, key_id=smart.new_key_id(),
        private_key_pem=smart.new_key(data.signing_alg) if data.auth == "smart" else None,
        bearer_token=data.bearer_token.get_secret_value() if data.bearer_token else None, enabled=data.enabled)
    session.add(connection)
    await session.flush()
    await audit.record(session, who, "create", "fhir_connection", connection.id)
    return connection


async def get(session: AsyncSession, who: Principal, connection_id: uuid.UUID, *,
              for_update: bool = False) -> EhrConnection:
    stmt = select(EhrConnection).where(EhrConnection.id == connection_id, EhrConnection.org_id == who.org_id)
    if for_update:
        stmt = stmt.with_for_update()
    connection = await session.scalar(stmt)
    if connection is None:
        raise NotFound("No such EHR connection", code="fhir_connection_not_found")
    return connection


async def list_all(session: AsyncSession, who: Principal) -> list[EhrConnection]:
    return list(await session.scalars(select(EhrConnection).where(EhrConnection.org_id == who.org_id)
                                      .order_by(EhrConnection.created_at, EhrConnection.id)))


async def enabled_of(session: AsyncSession, org_id: uuid.UUID) -> list[EhrConnection]:
    return list(await session.scalars(select(EhrConnection).where(EhrConnection.org_id == org_id,
                                                                  EhrConnection.enabled.is_(True))))


async def update(session: AsyncSession, who: Principal, connection_id: uuid.UUID, data: ConnectionUpdate,
                 settings: Settings) -> EhrConnection:
    connection = await get(session, who, connection_id, for_update=True)
    changes = data.model_dump(exclude_unset=True)
    for name in ("name", "base_url", "scope", "enabled"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    if changes.get("base_url"):
        connection.base_url = await _checked(changes["base_url"], settings, "base_url")
    if changes.get("token_url"):
        connection.token_url = await _checked(changes["token_url"], settings, "token_url")
    for name in ("name", "client_id", "scope", "enabled"):
        if name in changes and (changes[name] is not None or name == "client_id"):
            setattr(connection, name, changes[name])
    if data.bearer_token is not None:
        connection.bearer_token = data.bearer_token.get_secret_value()
    if connection.auth == "smart" and (connection.token_url is None or connection.client_id is None):
        raise ValidationFailed.field("client_id", "a SMART connection needs token_url and client_id")
    if data.rotate_key:
        if connection.auth != "smart":
            raise ValidationFailed.field("rotate_key", "only SMART connections have a signing key")
        connection.private_key_pem = smart.new_key(connection.signing_alg)
        connection.key_id = smart.new_key_id()
    await session.flush()
    await audit.record(session, who, "update", "fhir_connection", connection.id,
                       details={"fields": sorted(k for k in changes if k != "bearer_token")
                                + (["bearer_token"] if data.bearer_token is not None else [])})
    return connection


async def delete(session: AsyncSession, who: Principal, connection_id: uuid.UUID) -> None:
    connection = await get(session, who, connection_id, for_update=True)
    await session.delete(connection)
    await session.flush()
    await audit.record(session, who, "delete", "fhir_connection", connection_id)


async def jwks(session: AsyncSession) -> dict[str, Any]:
    """The public keys of every SMART connection (all organisations: public keys are public)."""
    rows = await session.execute(select(EhrConnection.private_key_pem, EhrConnection.signing_alg,
                                        EhrConnection.key_id).where(EhrConnection.auth == "smart",
                                                                    EhrConnection.private_key_pem.is_not(None))
                                 .order_by(EhrConnection.created_at, EhrConnection.id))
    return {"keys": [smart.public_jwk(pem, alg, kid) for pem, alg, kid in rows.all() if pem]}


def smart_client(connection: EhrConnection) -> smart.Client:
    assert connection.token_url and connection.client_id and connection.private_key_pem
    return smart.Client(connection_id=connection.id, token_url=connection.token_url,
                        client_id=connection.client_id, scope=connection.scope, alg=connection.signing_alg,
                        kid=connection.key_id, private_pem=connection.private_key_pem)
