"""Ids named in a request, resolved within the caller's organisation.

A domain registers how to tell whether one of its rows exists in an organisation
(`@references.resolver("conversation")`), and any service, whatever its layer, checks an id it was
given with `await references.require(session, org_id, "conversation", value, field="conversation_id")`:
an unknown id, or one of another organisation, is a 422 naming the field, the same answer for
both, so a caller learns nothing about other organisations. This is how a lower layer checks a
higher one's id (communications → conversations) without importing it, as with events.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core.errors import ValidationFailed

Resolver = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[bool]]
_resolvers: dict[str, Resolver] = {}


def resolver(kind: str) -> Callable[[Resolver], Resolver]:
    """Register `fn(session, org_id, id) -> bool`: does a `kind` with this id exist in the organisation."""

    def register(fn: Resolver) -> Resolver:
        _resolvers[kind] = fn
        return fn

    return register


def in_organisation(model: Any) -> Resolver:
    """The resolver of a model with `id` and `org_id` columns: is there such a row in the organisation."""

    async def check(session: AsyncSession, org_id: uuid.UUID, row_id: uuid.UUID) -> bool:
        found = await session.scalar(select(model.id).where(model.id == row_id, model.org_id == org_id))
        return found is not None

    return check


def unknown(field: str, kind: str) -> ValidationFailed:
    return ValidationFailed.field(field, f"no {kind.replace('_', ' ')} with this id in this organisation",
                                  code="unknown_reference")


async def require(session: AsyncSession, org_id: uuid.UUID, kind: str, value: uuid.UUID | None, *,
                  field: str) -> None:
    """Raise a 422 naming `field` unless `value` is None or names a `kind` of this organisation."""
    if value is None:
        return
    try:
        check = _resolvers[kind]
    except KeyError:
        raise RuntimeError(f"no resolver registered for {kind!r} (is its module loaded?)") from None
    if not await check(session, org_id, value):
        raise unknown(field, kind)


async def require_all(session: AsyncSession, org_id: uuid.UUID, kind: str, values: Iterable[uuid.UUID] | None, *,
                      field: str) -> None:
    """`require` for a list of ids; the error names the first unknown one's index (`field.N`)."""
    for i, value in enumerate(values or []):
        await require(session, org_id, kind, value, field=f"{field}.{i}")
