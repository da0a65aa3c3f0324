"""Login, the caller's identity, and the admin API for organisations, users and API keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from prm.context import AppContext
from prm.core import audit, ratelimit
from prm.core.auth import Principal, Requires, issue_token
from prm.core.db import Session
from prm.core.errors import Unauthenticated
from prm.identity import service
from prm.identity.models import Organisation
from prm.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    Me,
    OrganisationCreate,
    OrganisationRead,
    OrganisationSettingsRead,
    OrganisationSettingsUpdate,
    Token,
    UserCreate,
    UserRead,
    UserUpdate,
)
from prm.identity.scopes import PLATFORM_ADMIN

router = APIRouter(tags=["identity"])


@router.post("/auth/token", response_model=Token, dependencies=[ratelimit.limit("rate_limit_login", "login")],
             summary="Log in (OAuth2 password flow): username is the email")
async def token(response: Response, form: Annotated[OAuth2PasswordRequestForm, Depends()],
                session: Session, ctx: AppContext, request: Request) -> Token:
    # Failed logins are limited per account as well as per address (the dependency above), so
    # rotating addresses does not buy more guesses. A used-up account answers 429 even to the
    # right password, so the limit cannot be used to test guesses.
    limiter: ratelimit.RateLimiter = request.app.state.rate_limiter
    rule = ctx.settings.rate_limit_login_account
    account = ratelimit.account_key(form.username)
    await limiter.check(rule, "login-account", account)
    try:
        user = await service.login(session, form.username, form.password)
    except Unauthenticated:
        await limiter.count(rule, "login-account", account)
        raise
    await limiter.clear(rule, "login-account", account)
    response.headers["Cache-Control"] = "no-store"
    access, ttl = issue_token(ctx.settings, user_id=user.id, org_id=user.org_id, role=user.role)
    return Token(access_token=access, expires_in=ttl)


@router.get("/auth/me", response_model=Me, summary="Who am I: organisation, role and scopes")
async def me(who: Principal = Requires()) -> Me:
    return Me(org_id=who.org_id, kind=who.kind, subject_id=who.subject_id, role=who.role, scopes=sorted(who.scopes))


admin = APIRouter(prefix="/admin", tags=["admin"])


@admin.get("/organisation", response_model=OrganisationRead, summary="The caller's organisation")
async def my_organisation(session: Session, who: Principal = Requires()) -> OrganisationRead:
    return OrganisationRead.model_validate(await service.get_organisation(session, who.org_id))


async def _settings_read(session: Session, org: Organisation) -> OrganisationSettingsRead:
    effective = await service.organisation_settings(session, org.id)
    return OrganisationSettingsRead(
        default_phone_region=org.default_phone_region,
        reminder_offsets_minutes=org.reminder_offsets_minutes,
        effective_phone_region=effective.phone_region,
        effective_reminder_offsets_minutes=list(effective.reminder_offsets_minutes),
        effective_reminder_offsets=",".join(str(o) for o in effective.reminder_offsets),
    )


@admin.get("/organisation/settings", response_model=OrganisationSettingsRead,
           summary="The organisation's own settings and the effective values (service defaults where unset)")
async def organisation_settings(session: Session, who: Principal = Requires("admin")) -> OrganisationSettingsRead:
    return await _settings_read(session, await service.get_organisation(session, who.org_id))


@admin.patch("/organisation/settings", response_model=OrganisationSettingsRead,
             summary="Change the organisation's own settings (null: back to the service default)")
async def update_organisation_settings(body: OrganisationSettingsUpdate, session: Session,
                                       who: Principal = Requires("admin")) -> OrganisationSettingsRead:
    return await _settings_read(session, await service.update_organisation_settings(session, who, body))


class OrganisationSignup(BaseModel):
    organisation: OrganisationCreate
    admin: UserCreate


class OrganisationCreated(BaseModel):
    organisation: OrganisationRead
    admin: UserRead


@admin.post("/organisations", status_code=201, response_model=OrganisationCreated,
            summary="Create another organisation with its first admin (platform admins only)",
            description="Needs the `platform:admin` scope, which only a platform admin user or key carries "
                        "(flagged by the operator with `prm users platform-admin` or "
                        "`prm api-keys create --platform-admin`); an organisation's `admin` role does not "
                        "grant it. No access to the new organisation is granted to the caller.")
async def create_organisation(body: OrganisationSignup, session: Session,
                              who: Principal = Requires(PLATFORM_ADMIN)) -> OrganisationCreated:
    org = await service.create_organisation(session, body.organisation)
    first = await service.create_user(session, org.id, body.admin.model_copy(update={"role": "admin"}))
    await audit.record(session, who, "create", "organisation", org.id)
    return OrganisationCreated(organisation=OrganisationRead.model_validate(org), admin=UserRead.model_validate(first))


@admin.get("/users", response_model=list[UserRead])
async def list_users(session: Session, who: Principal = Requires("admin")) -> list[UserRead]:
    return [UserRead.model_validate(u) for u in await service.list_users(session, who.org_id)]


@admin.post("/users", status_code=201, response_model=UserRead)
async def create_user(body: UserCreate, session: Session, who: Principal = Requires("admin")) -> UserRead:
    user = await service.create_user(session, who.org_id, body)
    await audit.record(session, who, "create", "user", user.id)
    return UserRead.model_validate(user)


@admin.patch("/users/{user_id}", response_model=UserRead)
async def update_user(user_id: uuid.UUID, body: UserUpdate, session: Session,
                      who: Principal = Requires("admin")) -> UserRead:
    user = await service.update_user(session, who.org_id, user_id, body,
                                     platform_admin=who.has(PLATFORM_ADMIN))
    await audit.record(session, who, "update", "user", user.id, details={"fields": sorted(body.model_fields_set)})
    return UserRead.model_validate(user)


@admin.get("/api-keys", response_model=list[ApiKeyRead])
async def list_api_keys(session: Session, who: Principal = Requires("admin")) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in await service.list_api_keys(session, who.org_id)]


@admin.post("/api-keys", status_code=201, response_model=ApiKeyCreated,
            summary="Create an API key; the key is in this response only")
async def create_api_key(body: ApiKeyCreate, session: Session, response: Response,
                         who: Principal = Requires("admin")) -> ApiKeyCreated:
    response.headers["Cache-Control"] = "no-store"
    key, full = await service.create_api_key(session, who.org_id, body, created_by=who.user_id)
    await audit.record(session, who, "create", "api_key", key.id)
    return ApiKeyCreated(**ApiKeyRead.model_validate(key).model_dump(), key=full)


@admin.post("/api-keys/{key_id}/revoke", response_model=ApiKeyRead)
async def revoke_api_key(key_id: uuid.UUID, session: Session, who: Principal = Requires("admin")) -> ApiKeyRead:
    key = await service.revoke_api_key(session, who.org_id, str(key_id))
    await audit.record(session, who, "revoke", "api_key", key.id)
    return ApiKeyRead.model_validate(key)


routers = [router, admin]
