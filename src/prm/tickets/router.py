"""Tickets API: thin HTTP layer over `tickets.service`, with ETag / If-Match on every ticket."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.errors import ValidationFailed
from prm.core.pagination import Page, Paging
from prm.tickets import service
from prm.tickets.models import Ticket
from prm.tickets.schemas import (
    CommentCreate,
    CommentRead,
    Priority,
    Status,
    TicketAssign,
    TicketCreate,
    TicketRead,
    TicketStatusChange,
    TicketUpdate,
)

router = APIRouter(prefix="/tickets", tags=["tickets"])

IfMatch = Annotated[
    str | None,
    Header(description="The ETag from your last read; a stale one answers 412 and nothing is written"),
]


def etag(ticket: Ticket) -> str:
    return f'"{ticket.version}"'


def expected_version(if_match: str | None) -> int | None:
    """The version an `If-Match` header names (`"3"`, `W/"3"`); None for absent or `*`."""
    if if_match is None or if_match.strip() == "*":
        return None
    value = if_match.strip().removeprefix("W/").strip('"')
    if not value.isdigit():
        raise ValidationFailed.field(
            "If-Match", 'must be the ETag of the ticket, e.g. "3"', code="invalid_if_match"
        )
    return int(value)


def _read(ticket: Ticket, response: Response) -> TicketRead:
    response.headers["ETag"] = etag(ticket)
    return TicketRead.model_validate(ticket)


@router.post(
    "",
    status_code=201,
    response_model=TicketRead,
    summary="Open a ticket",
    description="Priority is raised to urgent when the subject or description contains a configured "
    "urgent keyword; the due time follows the SLA of the priority. Without an assignee the "
    "ticket is auto-assigned to the eligible staff member with the fewest open tickets in "
    "its category (ties round-robin), unless `auto_assign` is false.",
)
async def create_ticket(
    body: TicketCreate, response: Response, session: Session, who: Principal = Requires("tickets:write")
) -> TicketRead:
    ticket = await service.create(session, who, body)
    response.headers["Location"] = f"/tickets/{ticket.id}"
    return _read(ticket, response)


@router.get(
    "",
    response_model=Page[TicketRead],
    summary="List tickets with filters and text search",
    description="`q` searches subject and description (full-text, plus a substring match on the "
    "subject). Ordered by relevance when searching, then priority, due time, age.",
)
async def list_tickets(
    session: Session,
    paging: Paging,
    status: Annotated[list[Status] | None, Query(description="One or more statuses")] = None,
    priority: Annotated[list[Priority] | None, Query(description="One or more priorities")] = None,
    category: str | None = None,
    assignee_id: uuid.UUID | None = None,
    unassigned: bool | None = None,
    patient_id: uuid.UUID | None = None,
    conversation_id: uuid.UUID | None = None,
    tag: str | None = None,
    overdue: Annotated[bool | None, Query(description="Open tickets past their due time")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text search")] = None,
    who: Principal = Requires("tickets:read"),
) -> Page[TicketRead]:
    filters = service.TicketFilters(
        status=list(status) if status else None,
        priority=list(priority) if priority else None,
        category=category,
        assignee_id=assignee_id,
        unassigned=unassigned,
        patient_id=patient_id,
        conversation_id=conversation_id,
        tag=tag,
        overdue=overdue,
        q=q,
    )
    rows, total = await service.list_tickets(session, who, filters, paging)
    return Page[TicketRead](
        items=[TicketRead.model_validate(t) for t in rows],
        total=total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get("/{ticket_id}", response_model=TicketRead, summary="Read a ticket (with its ETag)")
async def get_ticket(
    ticket_id: uuid.UUID, response: Response, session: Session, who: Principal = Requires("tickets:read")
) -> TicketRead:
    return _read(await service.get(session, who, ticket_id), response)


@router.patch(
    "/{ticket_id}",
    response_model=TicketRead,
    summary="Change subject, description, category, priority or tags",
    responses={412: {"description": "If-Match is stale"}},
)
async def update_ticket(
    ticket_id: uuid.UUID,
    body: TicketUpdate,
    response: Response,
    session: Session,
    if_match: IfMatch = None,
    who: Principal = Requires("tickets:write"),
) -> TicketRead:
    ticket = await service.update(
        session,
        who,
        ticket_id,
        body,
        expected_version=expected_version(if_match),
    )
    return _read(ticket, response)


@router.post(
    "/{ticket_id}/status",
    response_model=TicketRead,
    summary="Move a ticket to another status",
    description="Allowed: open → in_progress | waiting | resolved | closed; in_progress → open | "
    "waiting | resolved | closed; waiting → open | in_progress | resolved | closed; "
    "resolved → open | closed; closed is final (409 lists the allowed ones).",
    responses={409: {"description": "Transition not allowed"}, 412: {"description": "If-Match is stale"}},
)
async def change_status(
    ticket_id: uuid.UUID,
    body: TicketStatusChange,
    response: Response,
    session: Session,
    if_match: IfMatch = None,
    who: Principal = Requires("tickets:write"),
) -> TicketRead:
    ticket = await service.change_status(
        session,
        who,
        ticket_id,
        body.status,
        expected_version=expected_version(if_match),
        comment=body.comment,
    )
    return _read(ticket, response)


@router.post(
    "/{ticket_id}/assign",
    response_model=TicketRead,
    summary="Assign, unassign or auto-assign",
    responses={412: {"description": "If-Match is stale"}},
)
async def assign_ticket(
    ticket_id: uuid.UUID,
    body: TicketAssign,
    response: Response,
    session: Session,
    if_match: IfMatch = None,
    who: Principal = Requires("tickets:write"),
) -> TicketRead:
    ticket = await service.assign(
        session,
        who,
        ticket_id,
        body.assignee_id,
        auto=body.auto,
        expected_version=expected_version(if_match),
    )
    return _read(ticket, response)


@router.get(
    "/{ticket_id}/comments",
    response_model=list[CommentRead],
    summary="Comments and internal notes, oldest first",
)
async def list_comments(
    ticket_id: uuid.UUID, session: Session, internal: bool = True, who: Principal = Requires("tickets:read")
) -> list[CommentRead]:
    rows = await service.list_comments(session, who, ticket_id, include_internal=internal)
    return [CommentRead.model_validate(c) for c in rows]


@router.post(
    "/{ticket_id}/comments",
    status_code=201,
    response_model=CommentRead,
    summary="Add a comment (or an internal note with internal=true)",
)
async def add_comment(
    ticket_id: uuid.UUID, body: CommentCreate, session: Session, who: Principal = Requires("tickets:write")
) -> CommentRead:
    return CommentRead.model_validate(await service.add_comment(session, who, ticket_id, body))
