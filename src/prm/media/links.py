"""What a media item can be attached to besides a patient, so that `media` never imports those modules.

Conversations, messages, tickets and intake sessions live in modules above media. Each registers a
resolver for its kind: `@link_target("ticket")` on `async def fn(session, org_id, ticket_id) ->
LinkTarget | None`, answering None when no such row exists in that organisation. An attachment
naming a kind nobody registered is refused like an unknown id.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

KINDS = ("conversation", "message", "ticket", "intake_session")


@dataclass(frozen=True)
class LinkTarget:
    """The row a link points at, and what it tells about the file's patient and conversation."""

    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


Resolver = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[LinkTarget | None]]
_resolvers: dict[str, Resolver] = {}


def link_target(kind: str) -> Callable[[Resolver], Resolver]:
    if kind not in KINDS:
        raise ValueError(f"unknown media link kind {kind!r}")

    def decorate(fn: Resolver) -> Resolver:
        _resolvers[kind] = fn
        return fn

    return decorate


def resolver(kind: str) -> Resolver | None:
    return _resolvers.get(kind)


def registered() -> dict[str, Resolver]:
    return dict(_resolvers)
