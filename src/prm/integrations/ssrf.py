"""Which URLs the service may call on an organisation's behalf (outbound webhooks, n8n).

A URL an organisation registers could point at the service's own network: the metadata service
of a cloud VM (169.254.169.254), the database, an admin port on 127.0.0.1. Only public addresses
are called unless `allow_private` is set (development and tests). The check runs when the URL is
registered and again before every call, on every address the name resolves to, so a name that
later resolves somewhere private is refused then.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL may not be called; the message says why (safe to show to the caller)."""


def is_public(address: IPAddress) -> bool:
    """True for globally routable unicast addresses only."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def parse(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL without credentials; UnsafeTarget otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise UnsafeTarget("is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("must be an http or https URL")
    if not parts.hostname:
        raise UnsafeTarget("has no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeTarget("must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_addresses(addresses: list[IPAddress], *, allow_private: bool) -> None:
    if not addresses:
        raise UnsafeTarget("does not resolve to any address")
    if allow_private:
        return
    for address in addresses:
        if not is_public(address):
            raise UnsafeTarget("resolves to a private, loopback or link-local address")


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return [literal]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        raise UnsafeTarget("does not resolve") from None
    return list({ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos})


async def check_url(url: str, *, allow_private: bool) -> None:
    """Raise UnsafeTarget unless `url` may be called now."""
    host, port = parse(url)
    check_addresses(await resolve(host, port), allow_private=allow_private)
