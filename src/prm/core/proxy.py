"""Forwarded headers, believed only from configured proxies.

Behind a reverse proxy the TCP peer is the proxy; the client's address, the scheme and the host it
called arrive in `X-Forwarded-For` / `X-Forwarded-Proto` / `X-Forwarded-Host` (or RFC 7239
`Forwarded`). Anyone can send those headers, so they are believed only when the TCP peer is one of
`TRUSTED_PROXIES` (addresses or CIDR networks; default none). Then `ForwardedHeadersMiddleware`
rewrites the ASGI scope once, before anything else runs: `client` becomes the nearest address that
is not itself a trusted proxy (walking the list from the right, the end the proxies append to; the
left end is whatever the client claimed), `scheme` and the `Host` header become those the nearest
proxy reports. The rate limiter, the audit log and the Twilio signature check all read the result
(`request.client.host`, `forwarded_base(request)`); nobody reads the raw headers.

Which header family the proxies set is a setting (`FORWARDED_HEADER_STYLE`), never guessed: a proxy
that sets one family passes the other through from the client untouched.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

SCOPE_KEY = "prm.forwarded"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """`["10.0.0.0/8", "127.0.0.1"]` → networks; raises ValueError naming a bad entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
    return tuple(networks)


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return parse_networks(entries)


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP from a header entry: `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `2001:db8::1`."""
    value = value.strip().strip('"')
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted(host: str | None, networks: Sequence[Network]) -> bool:
    if not host or not networks:
        return False
    address = _address(host)
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True)
class Forwarded:
    """What a trusted proxy told us; each part None when it said nothing (usable) about it."""

    client: str | None = None
    proto: str | None = None
    host: str | None = None


def _split_list(values: list[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _client_from(chain: list[str], networks: Sequence[Network]) -> str | None:
    """The nearest address in `chain` that is not a trusted proxy (the chain's rightmost is nearest)."""
    for entry in reversed(chain):
        address = _address(entry)
        if address is None:  # "unknown", an obfuscated identifier, garbage: stop believing the chain here
            return None
        if not any(address in network for network in networks):
            return str(address)
    first = _address(chain[0]) if chain else None
    return str(first) if first is not None else None


def _proto(value: str | None) -> str | None:
    value = (value or "").strip().strip('"').lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    value = (value or "").strip().strip('"')
    return value if value and _HOST.match(value) else None


def _forwarded_elements(values: list[str]) -> list[dict[str, str]]:
    """RFC 7239 `Forwarded: for=1.2.3.4;proto=https;host=a.example, for=...` as a list of dicts."""
    elements = []
    for element in _split_list(values):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            name, sep, value = pair.partition("=")
            if sep:
                pairs[name.strip().lower()] = value.strip().strip('"')
        elements.append(pairs)
    return elements


def resolve(headers: list[tuple[bytes, bytes]], networks: Sequence[Network], style: str) -> Forwarded:
    """Read the forwarded headers of a request whose TCP peer is a trusted proxy."""

    def values(name: bytes) -> list[str]:
        return [v.decode("latin-1") for k, v in headers if k == name]

    if style == "forwarded":
        elements = _forwarded_elements(values(b"forwarded"))
        if not elements:
            return Forwarded()
        nearest = elements[-1]
        chain = [e["for"] for e in elements if "for" in e]
        return Forwarded(client=_client_from(chain, networks) if chain else None,
                         proto=_proto(nearest.get("proto")), host=_host(nearest.get("host")))
    chain = _split_list(values(b"x-forwarded-for"))
    protos = _split_list(values(b"x-forwarded-proto"))
    hosts = _split_list(values(b"x-forwarded-host"))
    return Forwarded(client=_client_from(chain, networks) if chain else None,
                     proto=_proto(protos[-1]) if protos else None,
                     host=_host(hosts[-1]) if hosts else None)


class ForwardedHeadersMiddleware:
    """Rewrites client, scheme and host from a trusted proxy's headers; ignores them from anyone else.

    The proxy list and header style are read from `app.state.settings` on each request (so one
    setting drives everything, and tests can change it like any other setting).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            settings: Any = scope["app"].state.settings
            networks = _networks(tuple(settings.trusted_proxies))
            peer = scope.get("client")
            if networks and peer and is_trusted(peer[0], networks):
                forwarded = resolve(scope.get("headers", []), networks, settings.forwarded_header_style)
                scope = dict(scope)
                if forwarded.client:
                    scope["client"] = (forwarded.client, 0)
                if forwarded.proto:
                    secure = forwarded.proto == "https"
                    scope["scheme"] = ("wss" if secure else "ws") if scope["type"] == "websocket" else forwarded.proto
                if forwarded.host:
                    scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k != b"host"]
                    scope["headers"].append((b"host", forwarded.host.encode("latin-1")))
                if forwarded.proto or forwarded.host:
                    scope[SCOPE_KEY] = forwarded
        await self.app(scope, receive, send)


def client_ip(connection: HTTPConnection) -> str | None:
    """The client's address: the TCP peer, or what a trusted proxy reported (see the middleware)."""
    return connection.client.host if connection.client else None


def forwarded_base(connection: HTTPConnection) -> tuple[str | None, str | None]:
    """(scheme, host) a trusted proxy reported for this request; (None, None) without one."""
    forwarded: Forwarded | None = connection.scope.get(SCOPE_KEY)
    if forwarded is None:
        return None, None
    return forwarded.proto, forwarded.host
