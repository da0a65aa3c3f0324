"""Organisations, users, API keys, login."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import audit, clock
from prm.core.auth import Principal, burn_password_check, hash_password, new_api_key, verify_password
from prm.core.errors import Conflict, NotFound, Unauthenticated, ValidationFailed
from prm.identity.models import ApiKey, Organisation, User
from prm.identity.schemas import ApiKeyCreate, OrganisationCreate, OrganisationSettingsUpdate, UserCreate, UserUpdate


def _check_timezone(field: str, name: str) -> None:
    if not clock.is_time_zone(name):
        raise ValidationFailed.field(field, f"unknown IANA time zone {name!r}")


async def create_organisation(session: AsyncSession, data: OrganisationCreate) -> Organisation:
    _check_timezone("timezone", data.timezone)
    if await session.scalar(select(Organisation.id).where(Organisation.slug == data.slug)):
        raise Conflict(f"An organisation with slug {data.slug!r} exists", code="slug_taken")
    org = Organisation(name=data.name, slug=data.slug, timezone=data.timezone)
    session.add(org)
    await session.flush()
    return org


async def get_organisation(session: AsyncSession, org_id: uuid.UUID) -> Organisation:
    org = await session.get(Organisation, org_id)
    if org is None:
        raise NotFound("Organisation not found")
    return org


@dataclass(frozen=True)
class OrganisationSettings:
    """An organisation's settings: its stored choice, else the process setting (the default)."""

    phone_region: str
    reminder_offsets_minutes: tuple[int, ...]  # largest first


def parse_offsets(raw: str) -> tuple[int, ...]:
    return tuple(sorted({int(part) for part in raw.split(",") if part.strip()}, reverse=True))


async def organisation_settings(session: AsyncSession, org_id: uuid.UUID) -> OrganisationSettings:
    process = context.of(session).settings
    row = (
        await session.execute(
            select(Organisation.default_phone_region, Organisation.reminder_offsets_minutes).where(
                Organisation.id == org_id
            )
        )
    ).one_or_none()
    region, offsets = (row[0], row[1]) if row is not None else (None, None)
    return OrganisationSettings(
        phone_region=region or process.default_phone_region,
        reminder_offsets_minutes=parse_offsets(offsets or process.reminder_offsets_minutes),
    )


async def update_organisation_settings(
    session: AsyncSession, who: Principal, data: OrganisationSettingsUpdate
) -> Organisation:
    org = await get_organisation(session, who.org_id)
    changes = data.model_dump(exclude_unset=True)
    region = changes.get("default_phone_region")
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationFailed.field("default_phone_region", f"unknown phone region {region!r}")
    for name, value in changes.items():
        setattr(org, name, value)
    await session.flush()
    await audit.record(session, who, "update", "organisation_settings", org.id, details={"fields": sorted(changes)})
    return org


async def find_organisation(session: AsyncSession, ref: str) -> Organisation:
    """By id or slug (CLI convenience)."""
    try:
        org = await session.get(Organisation, uuid.UUID(ref))
    except ValueError:
        org = await session.scalar(select(Organisation).where(Organisation.slug == ref))
    if org is None:
        raise NotFound(f"No organisation {ref!r}")
    return org


async def create_user(session: AsyncSession, org_id: uuid.UUID, data: UserCreate) -> User:
    email = str(data.email).lower()
    if await session.scalar(select(User.id).where(func.lower(User.email) == email)):
        raise Conflict("A user with this email exists", code="email_taken",
                       errors=[{"field": "email", "message": "already registered", "type": "email_taken"}])
    user = User(org_id=org_id, email=email, full_name=data.full_name, role=data.role,
                password_hash=hash_password(data.password))
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise Conflict("A user with this email exists", code="email_taken") from None
    return user


async def get_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = await session.scalar(select(User).where(User.id == user_id, User.org_id == org_id))
    if user is None:
        raise NotFound("User not found")
    return user


async def list_users(session: AsyncSession, org_id: uuid.UUID) -> list[User]:
    return list((await session.scalars(select(User).where(User.org_id == org_id).order_by(User.created_at))).all())


async def update_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, data: UserUpdate) -> User:
    user = await get_user(session, org_id, user_id)
    changes = data.model_dump(exclude_unset=True)
    password = changes.pop("password", None)
    for field, value in changes.items():
        if value is not None:
            setattr(user, field, value)
    if password:
        user.password_hash = hash_password(password)
    await session.flush()
    return user


async def login(session: AsyncSession, email: str, password: str) -> User:
    user = await session.scalar(
        select(User)
        .join(Organisation, Organisation.id == User.org_id)
        .where(func.lower(User.email) == email.lower(), User.is_active.is_(True), Organisation.is_active.is_(True))
    )
    if user is None:
        burn_password_check(password)
        raise Unauthenticated("Incorrect email or password")
    if not verify_password(user.password_hash, password):
        raise Unauthenticated("Incorrect email or password")
    user.last_login_at = clock.now()
    return user


async def create_api_key(
    session: AsyncSession, org_id: uuid.UUID, data: ApiKeyCreate, *, created_by: uuid.UUID | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again."""
    if data.expires_at is not None and data.expires_at <= clock.now():
        raise ValidationFailed.field("expires_at", "must be in the future")
    full, prefix, secret_hash = new_api_key()
    key = ApiKey(org_id=org_id, name=data.name, role=data.role, prefix=prefix, secret_hash=secret_hash,
                 created_by_user_id=created_by, expires_at=data.expires_at)
    session.add(key)
    await session.flush()
    return key, full


async def list_api_keys(session: AsyncSession, org_id: uuid.UUID) -> list[ApiKey]:
    return list(
        (await session.scalars(select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at))).all()
    )


async def revoke_api_key(session: AsyncSession, org_id: uuid.UUID | None, key_ref: str) -> ApiKey:
    """Revoke by id or prefix; `org_id=None` only from the CLI (operator access)."""
    stmt = select(ApiKey)
    try:
        stmt = stmt.where(ApiKey.id == uuid.UUID(key_ref))
    except ValueError:
        stmt = stmt.where(ApiKey.prefix == key_ref.removeprefix("prm_").split("_")[0])
    if org_id is not None:
        stmt = stmt.where(ApiKey.org_id == org_id)
    key = await session.scalar(stmt)
    if key is None:
        raise NotFound("API key not found")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
    await session.flush()
    return key

