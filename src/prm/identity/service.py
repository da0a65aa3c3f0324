"""Organisations, users, API keys, login."""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import audit, clock, references
from prm.core import reminder_offsets as reminder_times
from prm.core.auth import (
    Principal,
    burn_password_check,
    decode_token,
    hash_password,
    hash_secret,
    new_api_key,
    split_api_key,
    verify_password,
)
from prm.core.errors import Conflict, NotFound, PermissionDenied, Unauthenticated, ValidationFailed
from prm.core.reminder_offsets import ReminderOffset
from prm.core.scopes import PLATFORM_ADMIN, scopes_for
from prm.identity.models import ApiKey, Organisation, User
from prm.identity.schemas import (
    ApiKeyCreate,
    OrganisationCreate,
    OrganisationSettingsUpdate,
    UserCreate,
    UserUpdate,
)
from prm.settings import Settings


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
    reminder_offsets: tuple[ReminderOffset, ...]  # largest first: 1d (local calendar days), 2h, 30m

    @property
    def reminder_offsets_minutes(self) -> tuple[int, ...]:
        """Nominal minutes of the offsets (1d = 1440)."""
        return tuple(o.nominal_minutes for o in self.reminder_offsets)


def parse_offsets(raw: str) -> tuple[ReminderOffset, ...]:
    return tuple(reminder_times.parse(raw))


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
        reminder_offsets=parse_offsets(offsets if offsets is not None else process.reminder_offsets),
    )


async def update_organisation_settings(
    session: AsyncSession, who: Principal, data: OrganisationSettingsUpdate
) -> Organisation:
    org = await get_organisation(session, who.org_id)
    changes = data.model_dump(exclude_unset=True)
    region = changes.get("default_phone_region")
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationFailed.field("default_phone_region", f"unknown phone region {region!r}")
    offsets = changes.get("reminder_offsets_minutes")
    if offsets is not None:
        try:
            changes["reminder_offsets_minutes"] = reminder_times.normalise(offsets)
        except ValueError as exc:
            raise ValidationFailed.field("reminder_offsets_minutes", str(exc)) from None
    for name, value in changes.items():
        setattr(org, name, value)
    await session.flush()
    await audit.record(session, who, "update", "organisation_settings", org.id, details={"fields": sorted(changes)})
    return org


async def find_organisation_by_id(session: AsyncSession, org_id: uuid.UUID) -> Organisation | None:
    return await session.get(Organisation, org_id)


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


user_exists = references.resolver("user")(references.in_organisation(User))


@references.resolver("actor")
async def actor_exists(session: AsyncSession, org_id: uuid.UUID, actor_id: uuid.UUID) -> bool:
    """A user or an API key of the organisation (who the audit log names)."""
    return await user_exists(session, org_id, actor_id) or await session.scalar(
        select(ApiKey.id).where(ApiKey.id == actor_id, ApiKey.org_id == org_id)) is not None


async def get_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> User:
    user = await session.scalar(select(User).where(User.id == user_id, User.org_id == org_id))
    if user is None:
        raise NotFound("User not found")
    return user


async def list_users(session: AsyncSession, org_id: uuid.UUID) -> list[User]:
    return list((await session.scalars(select(User).where(User.org_id == org_id).order_by(User.created_at))).all())


async def update_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, data: UserUpdate,
                      *, platform_admin: bool = False) -> User:
    """Change a user; a platform admin user only by a platform admin (an organisation's admin
    resetting their password would otherwise gain the platform role)."""
    user = await get_user(session, org_id, user_id)
    if user.is_platform_admin and not platform_admin:
        raise PermissionDenied("Only a platform admin can change a platform admin user",
                               missing_scopes=[PLATFORM_ADMIN])
    changes = data.model_dump(exclude_unset=True)
    password = changes.pop("password", None)
    for field, value in changes.items():
        if value is not None:
            setattr(user, field, value)
    if password:
        user.password_hash = hash_password(password)
    await session.flush()
    return user


async def set_platform_admin(session: AsyncSession, user_ref: str, value: bool) -> User:
    """Grant or withdraw the platform role of a user (by id or email). CLI only: operator access."""
    try:
        stmt = select(User).where(User.id == uuid.UUID(user_ref))
    except ValueError:
        stmt = select(User).where(func.lower(User.email) == user_ref.lower())
    user = await session.scalar(stmt)
    if user is None:
        raise NotFound(f"No user {user_ref!r}")
    user.is_platform_admin = value
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
    session: AsyncSession, org_id: uuid.UUID, data: ApiKeyCreate, *, created_by: uuid.UUID | None = None,
    platform_admin: bool = False,
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never retrievable again.

    `platform_admin=True` (a key that may create organisations) only from the CLI: the API never
    passes it."""
    if data.expires_at is not None and data.expires_at <= clock.now():
        raise ValidationFailed.field("expires_at", "must be in the future")
    full, prefix, secret_hash = new_api_key()
    key = ApiKey(org_id=org_id, name=data.name, role=data.role, prefix=prefix, secret_hash=secret_hash,
                 created_by_user_id=created_by, expires_at=data.expires_at, is_platform_admin=platform_admin)
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



# --- staff users as other domains see them -------------------------------------------------------


async def is_active_user(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> bool:
    """The one "active staff user in this organisation" rule (assignees of tickets and conversations)."""
    found = await session.scalar(
        select(User.id).where(User.id == user_id, User.org_id == org_id, User.is_active.is_(True))
    )
    return found is not None


async def require_active_user(
    session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID, *, field: str = "assignee_id"
) -> None:
    """422 naming `field` unless `user_id` is an active staff user of this organisation."""
    if not await is_active_user(session, org_id, user_id):
        raise ValidationFailed.field(
            field, "no such active staff user in this organisation", code="assignee_not_found"
        )


async def active_user_ids(session: AsyncSession, org_id: uuid.UUID, roles: Sequence[str]) -> list[uuid.UUID]:
    """The active staff users of this organisation with one of `roles`."""
    rows = await session.scalars(
        select(User.id).where(User.org_id == org_id, User.is_active.is_(True), User.role.in_(roles))
    )
    return list(rows)


# --- authentication (called by core.auth.Requires through app.state.authenticate) ----------------

LAST_USED_RESOLUTION = timedelta(minutes=1)


async def authenticate(session: Any, settings: Settings, raw: str, ip: str | None) -> Principal:
    """The caller behind an API key or a staff JWT (`core.auth.Requires` calls this through the app)."""
    now = clock.now()
    parts = split_api_key(raw)
    if parts is not None:
        prefix, secret = parts
        row = (
            await session.execute(
                select(ApiKey)
                .join(Organisation, Organisation.id == ApiKey.org_id)
                .where(ApiKey.prefix == prefix, Organisation.is_active.is_(True))
            )
        ).scalar_one_or_none()
        if (
            row is None
            or not hmac.compare_digest(row.secret_hash, hash_secret(secret))
            or row.revoked_at is not None
            or (row.expires_at is not None and row.expires_at <= now)
        ):
            raise Unauthenticated("Invalid API key")
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            await session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=now))
        return Principal(org_id=row.org_id, kind="api_key", subject_id=row.id, role=row.role,
                         scopes=scopes_for(row.role, platform_admin=row.is_platform_admin), ip=ip,
                         valid_until=row.expires_at)

    claims = decode_token(settings, raw)
    if claims["exp"] <= int(now.timestamp()):
        raise Unauthenticated("Access token expired")
    try:
        user_id = uuid.UUID(claims["sub"])
        org_id = uuid.UUID(claims["org"])
    except ValueError:
        raise Unauthenticated("Invalid access token") from None
    user = (
        await session.execute(
            select(User)
            .join(Organisation, Organisation.id == User.org_id)
            .where(User.id == user_id, User.org_id == org_id, User.is_active.is_(True),
                   Organisation.is_active.is_(True))
        )
    ).scalar_one_or_none()
    if user is None:
        raise Unauthenticated("Invalid access token")
    return Principal(org_id=user.org_id, kind="user", subject_id=user.id, role=user.role,
                     scopes=scopes_for(user.role, platform_admin=user.is_platform_admin), ip=ip,
                     valid_until=datetime.fromtimestamp(claims["exp"], UTC))
