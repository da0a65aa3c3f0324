"""Organisations, staff users and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from prm.core.models import Base, IdMixin, OrgMixin, TimestampMixin, one_of
from prm.identity.scopes import ROLES


class Organisation(IdMixin, TimestampMixin, Base):
    __tablename__ = "organisations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(80), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    is_active: Mapped[bool] = mapped_column(default=True)
    # the organisation's own settings; NULL follows the process setting of the same name
    default_phone_region: Mapped[str | None] = mapped_column(String(2))
    reminder_offsets_minutes: Mapped[str | None] = mapped_column(String(100))


_role_check = one_of("role", ROLES)


class User(IdMixin, TimestampMixin, OrgMixin, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(_role_check, name="role"),
        Index("uq_users_email_lower", text("lower(email)"), unique=True),
    )

    email: Mapped[str] = mapped_column(String(320))
    full_name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    # Platform operator (creates organisations); set only by `prm users platform-admin`.
    is_platform_admin: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    last_login_at: Mapped[datetime | None]


class ApiKey(IdMixin, TimestampMixin, OrgMixin, Base):
    """An integration credential. Only a SHA-256 of the secret is stored; the key is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_role_check, name="role"),)

    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_by_user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    last_used_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # A platform key (creates organisations); made only by `prm api-keys create --platform-admin`.
    is_platform_admin: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
