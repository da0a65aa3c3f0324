"""SMART Backend Services (client credentials with a `private_key_jwt` assertion), as a client.

Each SMART connection has its own signing key (ES384 by default, or RS384), generated when the
connection is created; its public half is published in our JWKS (`/.well-known/jwks.json`) under the
connection's `kid`, which is what the EHR registers. To get a token we sign a short-lived assertion
(`iss` = `sub` = client id, `aud` = the token URL, a fresh `jti`, `exp` ≤ 5 minutes) and POST it to the
token endpoint; the token is cached per connection and key until shortly before it expires.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME = timedelta(minutes=5)
REFRESH_MARGIN = timedelta(seconds=60)


class TokenError(Exception):
    """The token endpoint refused or failed; `transient` says whether trying later may help."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


def new_key(alg: str) -> str:
    """A new private key (PKCS#8 PEM) for `alg`: P-384 for ES384, RSA 3072 for RS384."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if alg == "ES384":
        key = ec.generate_private_key(ec.SECP384R1())
    elif alg == "RS384":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def new_key_id() -> str:
    return f"prm-{uuid.uuid4().hex[:20]}"


def public_jwk(private_pem: str, alg: str, kid: str) -> dict[str, Any]:
    """The public JWK of a private key, as the JWKS publishes it."""
    private = serialization.load_pem_private_key(private_pem.encode(), password=None)
    public = private.public_key()
    jwk_json = ECAlgorithm.to_jwk(public) if alg == "ES384" else RSAAlgorithm.to_jwk(public)  # type: ignore[arg-type]
    jwk = json.loads(jwk_json) if isinstance(jwk_json, str) else dict(jwk_json)
    jwk.update({"kid": kid, "alg": alg, "use": "sig", "key_ops": ["verify"]})
    return jwk


@dataclass(frozen=True)
class Client:
    """What the token request needs from a connection."""

    connection_id: uuid.UUID
    token_url: str
    client_id: str
    scope: str
    alg: str
    kid: str
    private_pem: str


def client_assertion(client: Client, now: datetime) -> str:
    claims = {"iss": client.client_id, "sub": client.client_id, "aud": client.token_url,
              "jti": uuid.uuid4().hex, "iat": int(now.timestamp()),
              "exp": int((now + ASSERTION_LIFETIME).timestamp())}
    return jwt.encode(claims, client.private_pem, algorithm=client.alg, headers={"kid": client.kid, "typ": "JWT"})


@dataclass
class _Cached:
    token: str
    expires_at: datetime


class TokenCache:
    """Access tokens per (connection, key, scope), valid until `REFRESH_MARGIN` before they expire."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[uuid.UUID, str, str], _Cached] = {}
        self._lock = threading.Lock()

    def get(self, client: Client, now: datetime) -> str | None:
        with self._lock:
            cached = self._tokens.get((client.connection_id, client.kid, client.scope))
        if cached is None or cached.expires_at - REFRESH_MARGIN <= now:
            return None
        return cached.token

    def put(self, client: Client, token: str, expires_at: datetime) -> None:
        with self._lock:
            self._tokens[(client.connection_id, client.kid, client.scope)] = _Cached(token, expires_at)

    def forget(self, client: Client) -> None:
        with self._lock:
            self._tokens.pop((client.connection_id, client.kid, client.scope), None)


CACHE = TokenCache()


async def access_token(http: httpx.AsyncClient, client: Client, now: datetime, *,
                       cache: TokenCache = CACHE) -> str:
    """A bearer token for `client`: from the cache, or a new one from the token endpoint."""
    cached = cache.get(client, now)
    if cached is not None:
        return cached
    form = {"grant_type": "client_credentials", "scope": client.scope,
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": client_assertion(client, now)}
    try:
        response = await http.post(client.token_url, data=form, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenError(f"token endpoint unreachable: {type(exc).__name__}", transient=True) from None
    if response.status_code != 200:
        transient = response.status_code in (408, 429) or response.status_code >= 500
        error = _error_of(response)
        raise TokenError(f"token endpoint answered {response.status_code}{': ' + error if error else ''}",
                         status=response.status_code, transient=transient)
    try:
        body = response.json()
        token = str(body["access_token"])
        expires_in = int(body.get("expires_in", 300))
    except (ValueError, KeyError, TypeError):
        raise TokenError("token endpoint answered without an access_token", status=200, transient=True) from None
    cache.put(client, token, now + timedelta(seconds=expires_in))
    return token


def _error_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return str(body.get("error", ""))[:100]
    return ""
