"""Authentication (JWT for staff, hashed API keys for integrations) and scope checks.

Routers declare what they need with `who: Principal = Requires("patients:read")`; that one
dependency authenticates the caller, checks the scopes and binds the org id to the log context.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

import jwt
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import event
from sqlalchemy.orm import Session as OrmSession

from prm.core import clock, idempotency
from prm.core.db import Session
from prm.core.errors import PermissionDenied, Unauthenticated
from prm.core.scopes import PLATFORM_SCOPES, scopes_for
from prm.settings import Settings

API_KEY_PREFIX = "prm_"
_hasher = PasswordHasher()
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/token", auto_error=False)
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An integration API key")


@dataclass(frozen=True)
class Principal:
    """Who is calling: always one organisation, one role, a set of scopes."""

    org_id: uuid.UUID
    kind: Literal["user", "api_key", "system"]
    subject_id: uuid.UUID | None
    role: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    ip: str | None = None
    # when the credential itself stops being valid (a token's `exp`, a key's `expires_at`), by the
    # service clock; the credential cache never serves it past that
    valid_until: datetime | None = field(default=None, compare=False, repr=False)

    @property
    def credential(self) -> str:
        return f"{self.kind}:{self.subject_id}" if self.subject_id else self.kind

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.subject_id if self.kind == "user" else None

    def has(self, scope: str) -> bool:
        """`admin` implies every organisation scope, never a platform one (see identity.scopes)."""
        return scope in self.scopes or ("admin" in self.scopes and scope not in PLATFORM_SCOPES)

    @classmethod
    def system(cls, org_id: uuid.UUID) -> Principal:
        """The service acting on its own (jobs, event handlers, webhooks)."""
        return cls(org_id=org_id, kind="system", subject_id=None, role="admin", scopes=scopes_for("admin"))


# --- passwords ---------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A real hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


def burn_password_check(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


# --- access tokens -----------------------------------------------------------------------------


def issue_token(settings: Settings, *, user_id: uuid.UUID, org_id: uuid.UUID, role: str) -> tuple[str, int]:
    ttl = timedelta(minutes=settings.access_token_ttl_minutes)
    issued = clock.now()
    claims = {
        "sub": str(user_id),
        "org": str(org_id),
        "role": role,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, settings.jwt_secret(), algorithm=settings.jwt_algorithm), int(ttl.total_seconds())


def decode_token(settings: Settings, token: str) -> dict[str, Any]:
    """The signed claims. Time claims are judged by the service clock (`clock.now()`), not by the
    JWT library's wall clock: `exp` in `identity.service.authenticate`; `iat` is not checked (PyJWT
    refused a token issued by a clock a second ahead — another server, a moved test clock)."""
    try:
        return jwt.decode(
            token,
            settings.jwt_secret(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "org", "exp"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError:
        raise Unauthenticated("Invalid access token") from None


# --- API keys ----------------------------------------------------------------------------------


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, lookup prefix, sha256 of the secret part)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"{API_KEY_PREFIX}{prefix}_{secret}", prefix, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_api_key(key: str) -> tuple[str, str] | None:
    if not key.startswith(API_KEY_PREFIX):
        return None
    prefix, sep, secret = key[len(API_KEY_PREFIX):].partition("_")
    if not sep or not prefix or not secret:
        return None
    return prefix, secret


# --- the dependency ----------------------------------------------------------------------------



Authenticator = Callable[[Any, Settings, str, "str | None"], Awaitable[Principal]]


class CredentialCache:
    """Principals of recently checked credentials, per process, for `seconds` (AUTH_CACHE_SECONDS).

    A hit skips the database: the most a revocation, deactivation or role change made in another
    process takes to be honoured here is `seconds`; in this process `forget()` (called by identity
    whenever it changes a credential) makes it immediate. Entries are keyed by a hash of the
    credential (the secret itself is not kept), never outlive the credential's own validity
    (`Principal.valid_until`, judged by the service clock) and are bounded in number.
    """

    def __init__(self, seconds: float, *, max_entries: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.max_entries = max_entries
        self.monotonic = monotonic  # real elapsed time (never the service clock, which tests move)
        self._entries: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._lock = threading.Lock()
        _caches.add(self)

    @staticmethod
    def _key(raw: str) -> str:
        return hashlib.sha256(raw.encode()).hexdigest()

    def get(self, raw: str) -> Principal | None:
        if self.seconds <= 0:
            return None
        key = self._key(raw)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            until, principal = entry
            if self.monotonic() >= until or (
                    principal.valid_until is not None and principal.valid_until <= clock.now()):
                del self._entries[key]
                return None
            return principal

    def put(self, raw: str, principal: Principal) -> None:
        if self.seconds <= 0:
            return
        with self._lock:
            self._entries[self._key(raw)] = (self.monotonic() + self.seconds, principal)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_caches: weakref.WeakSet[CredentialCache] = weakref.WeakSet()  # every live cache of this process


def forget_credentials() -> None:
    """Drop every cached credential of this process (a key revoked, a user deactivated or changed)."""
    for cache in _caches:
        cache.clear()


# The tables a credential is checked against (identity's; core knows them by name only). Any change
# to one of their rows written by this process forgets the cached credentials, when it is flushed
# and again when it commits (so a request that re-checked in between is forgotten too).
CREDENTIAL_TABLES = frozenset({"users", "api_keys", "organisations"})
_CHANGED = "prm.auth.credentials_changed"


@event.listens_for(OrmSession, "after_flush")
def _credentials_flushed(session: OrmSession, _context: Any) -> None:
    for row in (*session.dirty, *session.deleted):
        if getattr(row, "__tablename__", None) in CREDENTIAL_TABLES:
            session.info[_CHANGED] = True
            forget_credentials()
            return


@event.listens_for(OrmSession, "after_commit")
def _credentials_committed(session: OrmSession) -> None:
    if session.info.pop(_CHANGED, False):
        forget_credentials()


@event.listens_for(OrmSession, "after_rollback")
def _credentials_rolled_back(session: OrmSession) -> None:
    session.info.pop(_CHANGED, None)


async def authenticate(session: Any, request: Request, bearer: str | None, api_key: str | None) -> Principal:
    """Check the credential with the authenticator the app was given (`identity.service.authenticate`:
    credentials are identity's tables, and core never imports a domain), through the app's
    `CredentialCache` (see there for how fast a revocation is honoured)."""
    raw = api_key or bearer
    if not raw:
        raise Unauthenticated()
    ip = request.client.host if request.client else None
    cache: CredentialCache | None = getattr(request.app.state, "credential_cache", None)
    if cache is not None:
        known = cache.get(raw)
        if known is not None:
            return known if known.ip == ip else replace(known, ip=ip)
    authenticator: Authenticator = request.app.state.authenticate
    principal = await authenticator(session, request.app.state.settings, raw, ip)
    if cache is not None:
        cache.put(raw, principal)
    return principal


def Requires(*scopes: str) -> Any:
    """Authenticate the caller and require every scope in `scopes` (none: any signed-in caller)."""

    async def dependency(
        request: Request,
        session: Session,
        bearer: str | None = Depends(oauth2_scheme),
        api_key: str | None = Depends(api_key_header),
    ) -> Principal:
        principal = await authenticate(session, request, bearer, api_key)
        request.state.principal = principal
        structlog.contextvars.bind_contextvars(org_id=str(principal.org_id))
        missing = [s for s in scopes if not principal.has(s)]
        if missing:
            raise PermissionDenied(
                f"This credential lacks the scope(s): {', '.join(missing)}", missing_scopes=missing
            )
        # Only now, for an authenticated and authorised caller, is an Idempotency-Key claimed.
        await idempotency.claim(request, principal)
        return principal

    dependency.required_scopes = scopes  # type: ignore[attr-defined]  # read by core.apidocs
    return Depends(dependency)
