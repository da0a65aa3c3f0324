"""Tickets: create, read, list, update, status, assignment (manual and automatic), comments, SLA.

Rules (pure, in `rules.py`): allowed status transitions, due time from the SLA of the priority,
configured urgent keywords raising the priority, and the auto-assignment choice. Writes lock the
row (`SELECT ... FOR UPDATE`) and check the caller's expected version (`If-Match`): a stale one is
`PreconditionFailed` (412). Every read and write of a ticket linked to a patient is audited.
Events: `ticket.created`, `ticket.assigned`, `ticket.status_changed`, `ticket.overdue`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.core import audit, clock, events, references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, PreconditionFailed, ValidationFailed
from prm.core.events import Event
from prm.core.pagination import PageParams, paginate
from prm.identity import service as identity
from prm.media import service as media
from prm.patients import service as patients
from prm.patients.registry import (
    on_merge,
    reassigning,
    rows_on_timeline,
)
from prm.settings import Settings
from prm.tickets import rules
from prm.tickets.models import Ticket, TicketComment
from prm.tickets.schemas import CommentCreate, TicketCreate, TicketUpdate


def sla_policy(s: Settings) -> rules.SlaPolicy:
    return rules.SlaPolicy(
        urgent_hours=s.ticket_sla_urgent_hours,
        high_hours=s.ticket_sla_high_hours,
        normal_hours=s.ticket_sla_normal_hours,
        low_hours=s.ticket_sla_low_hours,
    )


# --- reading -------------------------------------------------------------------------------------


async def get(
    session: AsyncSession, who: Principal, ticket_id: uuid.UUID
) -> Ticket:
    org_id = who.org_id
    ticket = await session.scalar(select(Ticket).where(Ticket.id == ticket_id, Ticket.org_id == org_id))
    if ticket is None:
        raise NotFound(f"Ticket {ticket_id} not found", code="ticket_not_found")
    if who.kind != "system":
        await audit.record(session, who, "read", "ticket", ticket.id, patient_id=ticket.patient_id)
    return ticket


@dataclass
class TicketFilters:
    status: list[str] | None = None
    priority: list[str] | None = None
    category: str | None = None
    assignee_id: uuid.UUID | None = None
    unassigned: bool | None = None
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    tag: str | None = None
    overdue: bool | None = None
    q: str | None = None


def _filtered(org_id: uuid.UUID, f: TicketFilters) -> Select[Any]:
    stmt = select(Ticket).where(Ticket.org_id == org_id)
    if f.status:
        stmt = stmt.where(Ticket.status.in_(f.status))
    if f.priority:
        stmt = stmt.where(Ticket.priority.in_(f.priority))
    if f.category:
        stmt = stmt.where(Ticket.category == f.category.lower())
    if f.assignee_id:
        stmt = stmt.where(Ticket.assignee_id == f.assignee_id)
    if f.unassigned is not None:
        stmt = stmt.where(Ticket.assignee_id.is_(None) if f.unassigned else Ticket.assignee_id.is_not(None))
    if f.patient_id:
        stmt = stmt.where(Ticket.patient_id == f.patient_id)
    if f.conversation_id:
        stmt = stmt.where(Ticket.conversation_id == f.conversation_id)
    if f.tag:
        stmt = stmt.where(Ticket.tags.contains([f.tag.lower()]))
    if f.overdue is not None:
        now = clock.now()
        late = Ticket.status.in_(rules.OPEN_STATUSES) & (Ticket.due_at <= now)
        stmt = stmt.where(late if f.overdue else ~late | Ticket.due_at.is_(None))
    order: list[Any] = []
    if f.q and f.q.strip():
        query = func.websearch_to_tsquery("simple", f.q.strip())
        pattern = "%" + f.q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(or_(Ticket.search_vector.op("@@")(query), Ticket.subject.ilike(pattern)))
        order.append(func.ts_rank(Ticket.search_vector, query).desc())
    priority_rank = func.array_position(
        text("ARRAY['urgent','high','normal','low']::text[]"), Ticket.priority
    )
    return stmt.order_by(
        *order, priority_rank, Ticket.due_at.asc().nulls_last(), Ticket.created_at, Ticket.id
    )


async def list_tickets(
    session: AsyncSession,
    who: Principal,
    filters: TicketFilters,
    paging: PageParams,
) -> tuple[list[Ticket], int]:
    org_id = who.org_id
    await references.require(session, org_id, "user", filters.assignee_id, field="assignee_id")
    await references.require(session, org_id, "patient", filters.patient_id, field="patient_id")
    await references.require(session, org_id, "conversation", filters.conversation_id, field="conversation_id")
    rows, total = await paginate(session, _filtered(org_id, filters), paging)
    if who.kind != "system":
        for ticket in rows:
            if ticket.patient_id is not None:
                await audit.record(session, who, "read", "ticket", ticket.id, patient_id=ticket.patient_id)
    return rows, total


# --- writing -------------------------------------------------------------------------------------


async def _changed(session: AsyncSession, who: Principal, ticket: Ticket, details: dict[str, Any], *,
                   action: str = "update") -> None:
    """Write the change and its audit entry."""
    await session.flush()
    await audit.record(session, who, action, "ticket", ticket.id, patient_id=ticket.patient_id, details=details)


async def _lock(
    session: AsyncSession, org_id: uuid.UUID, ticket_id: uuid.UUID, expected_version: int | None
) -> Ticket:
    ticket = await session.scalar(
        select(Ticket)
        .where(Ticket.id == ticket_id, Ticket.org_id == org_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if ticket is None:
        raise NotFound(f"Ticket {ticket_id} not found", code="ticket_not_found")
    if expected_version is not None and ticket.version != expected_version:
        raise PreconditionFailed(
            f"Ticket {ticket_id} changed since you read it (version {expected_version}, "
            f"now {ticket.version}); read it again and retry",
            code="stale_version",
            current_version=ticket.version,
        )
    return ticket


async def _require_patient(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID) -> None:
    try:
        await patients.get(session, org_id, patient_id)
    except NotFound:
        raise ValidationFailed.field(
            "patient_id", "no such patient in this organisation", code="patient_not_found"
        )


ConversationLookup = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[bool]]
_conversation_lookups: list[ConversationLookup] = []


def conversation_lookup(fn: ConversationLookup) -> ConversationLookup:
    """Registered by `conversations` (a higher layer): does this conversation exist in the organisation?
    Tickets link to conversations without importing them."""
    _conversation_lookups[:] = [fn]
    return fn


async def _require_conversation(session: AsyncSession, org_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
    found = any([await lookup(session, org_id, conversation_id) for lookup in _conversation_lookups])
    if not found:
        raise ValidationFailed.field(
            "conversation_id", "no such conversation in this organisation", code="conversation_not_found"
        )


async def _require_assignee(session: AsyncSession, org_id: uuid.UUID, user_id: uuid.UUID) -> None:
    await identity.require_active_user(session, org_id, user_id, field="assignee_id")


def _actor(who: Principal) -> tuple[str, uuid.UUID | None]:
    return who.kind, who.subject_id


async def create(
    session: AsyncSession,
    who: Principal,
    data: TicketCreate,
    *,
    source: str = "api",
    settings: Settings | None = None,
) -> Ticket:
    """Open a ticket: priority raised by urgent keywords, due time from the SLA, then (auto-)assigned."""
    org_id = who.org_id
    s = settings or context.of(session).settings
    if data.patient_id is not None:
        await _require_patient(session, org_id, data.patient_id)
    if data.conversation_id is not None:
        await _require_conversation(session, org_id, data.conversation_id)
    if data.assignee_id is not None:
        await _require_assignee(session, org_id, data.assignee_id)
    priority, matched = rules.effective_priority(
        data.priority, f"{data.subject}\n{data.description}", s.ticket_urgent_keywords
    )
    now = clock.now()
    kind, actor_id = _actor(who)
    ticket = Ticket(
        id=uuid.uuid4(),
        org_id=org_id,
        subject=data.subject,
        description=data.description,
        category=data.category,
        priority=priority,
        status="open",
        source=source,
        patient_id=data.patient_id,
        conversation_id=data.conversation_id,
        tags=list(data.tags),
        urgent_keywords=matched,
        due_at=rules.due_at(priority, now, sla_policy(s)),
        created_by_kind=kind,
        created_by_id=actor_id,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    await session.flush()
    if data.assignee_id is not None:
        ticket.assignee_id = data.assignee_id
    elif data.auto_assign:
        await _auto_assign(session, ticket, s)
    await _changed(session, who, ticket, {"priority": priority, "category": ticket.category, "source": source},
                   action="create")
    await events.publish(
        session,
        Event(
            type="ticket.created",
            org_id=org_id,
            payload={
                "ticket_id": str(ticket.id),
                "patient_id": _str(ticket.patient_id),
                "priority": ticket.priority,
                "category": ticket.category,
                "assignee_id": _str(ticket.assignee_id),
                "source": source,
                "conversation_id": _str(ticket.conversation_id),
            },
        ),
    )
    if ticket.assignee_id is not None:
        await _publish_assigned(session, ticket, None, auto=ticket.auto_assigned_at is not None)
    return ticket


async def update(
    session: AsyncSession,
    who: Principal,
    ticket_id: uuid.UUID,
    data: TicketUpdate,
    *,
    expected_version: int | None = None,
    settings: Settings | None = None,
) -> Ticket:
    org_id = who.org_id
    s = settings or context.of(session).settings
    ticket = await _lock(session, org_id, ticket_id, expected_version)
    changes = data.model_dump(exclude_unset=True)
    for name in ("subject", "category", "priority"):
        if name in changes and changes[name] is None:
            raise ValidationFailed.field(name, "may not be null")
    if ticket.status == "closed" and changes:
        raise Conflict(f"Ticket {ticket_id} is closed", code="ticket_closed")
    for name, value in changes.items():
        if name == "tags" and value is not None:
            value = list(dict.fromkeys(value))
        setattr(ticket, name, value if value is not None else ("" if name == "description" else []))
    if {"subject", "description", "priority"} & changes.keys():
        priority, matched = rules.effective_priority(
            ticket.priority, f"{ticket.subject}\n{ticket.description}", s.ticket_urgent_keywords
        )
        ticket.priority, ticket.urgent_keywords = priority, matched
        new_due = rules.due_at(priority, ticket.created_at, sla_policy(s))
        if new_due != ticket.due_at:
            ticket.due_at, ticket.overdue_at = new_due, None
    await _changed(session, who, ticket, {"fields": sorted(changes)})
    return ticket


async def change_status(
    session: AsyncSession,
    who: Principal,
    ticket_id: uuid.UUID,
    status: str,
    *,
    expected_version: int | None = None,
    comment: str | None = None,
) -> Ticket:
    org_id = who.org_id
    ticket = await _lock(session, org_id, ticket_id, expected_version)
    previous = ticket.status
    if not rules.can_transition(previous, status):
        allowed = list(rules.allowed_transitions(previous))
        raise Conflict(
            f"A ticket cannot go from {previous} to {status}; allowed: {', '.join(allowed) or 'none'}",
            code="invalid_transition",
            allowed=allowed,
        )
    now = clock.now()
    ticket.status = status
    if status == "resolved":
        ticket.resolved_at = now
    elif status == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    elif status in rules.OPEN_STATUSES:
        ticket.resolved_at = None
    if comment:
        _add_comment(session, ticket, comment, internal=True, who=who)
    await _changed(session, who, ticket, {"status": [previous, status]})
    await events.publish(
        session,
        Event(
            type="ticket.status_changed",
            org_id=org_id,
            payload={
                "ticket_id": str(ticket.id),
                "from": previous,
                "to": status,
                "patient_id": _str(ticket.patient_id),
            },
        ),
    )
    return ticket


async def assign(
    session: AsyncSession,
    who: Principal,
    ticket_id: uuid.UUID,
    assignee_id: uuid.UUID | None,
    *,
    auto: bool = False,
    expected_version: int | None = None,
    settings: Settings | None = None,
) -> Ticket:
    """Assign to a staff user, unassign (None), or let the auto-assignment rule choose (`auto`)."""
    org_id = who.org_id
    ticket = await _lock(session, org_id, ticket_id, expected_version)
    if ticket.status == "closed":
        raise Conflict(f"Ticket {ticket_id} is closed", code="ticket_closed")
    previous = ticket.assignee_id
    if auto:
        ticket.assignee_id = None
        await _auto_assign(session, ticket, settings or context.of(session).settings)
    else:
        if assignee_id is not None:
            await _require_assignee(session, org_id, assignee_id)
        ticket.assignee_id = assignee_id
        ticket.auto_assigned_at = None
    await _changed(session, who, ticket, {"assignee_id": _str(ticket.assignee_id), "auto": auto})
    if ticket.assignee_id != previous:
        await _publish_assigned(session, ticket, previous, auto=auto)
    return ticket


async def eligible_assignees(
    session: AsyncSession, org_id: uuid.UUID, settings: Settings | None = None
) -> list[uuid.UUID]:
    roles = (settings or context.of(session).settings).ticket_auto_assign_roles
    return await identity.active_user_ids(session, org_id, roles)


async def _auto_assign(session: AsyncSession, ticket: Ticket, settings: Settings) -> uuid.UUID | None:
    # One auto-assignment per (organisation, category) at a time, so concurrent tickets spread out.
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"tickets.assign:{ticket.org_id}:{ticket.category}"},
    )
    candidates = await eligible_assignees(session, ticket.org_id, settings)
    if not candidates:
        return None
    counts = dict(
        (
            await session.execute(
                select(Ticket.assignee_id, func.count())
                .where(
                    Ticket.org_id == ticket.org_id,
                    Ticket.category == ticket.category,
                    Ticket.status.in_(rules.OPEN_STATUSES),
                    Ticket.assignee_id.in_(candidates),
                    Ticket.id != ticket.id,
                )
                .group_by(Ticket.assignee_id)
            )
        ).all()
    )
    last = await session.scalar(
        select(Ticket.assignee_id)
        .where(
            Ticket.org_id == ticket.org_id,
            Ticket.category == ticket.category,
            Ticket.auto_assigned_at.is_not(None),
            Ticket.id != ticket.id,
        )
        .order_by(Ticket.auto_assigned_at.desc())
        .limit(1)
    )
    chosen = rules.choose_assignee(candidates, counts, last)
    ticket.assignee_id = chosen
    ticket.auto_assigned_at = clock.now() if chosen else None
    return chosen


async def _publish_assigned(
    session: AsyncSession, ticket: Ticket, previous: uuid.UUID | None, *, auto: bool
) -> None:
    await events.publish(
        session,
        Event(
            type="ticket.assigned",
            org_id=ticket.org_id,
            payload={
                "ticket_id": str(ticket.id),
                "assignee_id": _str(ticket.assignee_id),
                "previous_assignee_id": _str(previous),
                "auto": auto,
            },
        ),
    )


# --- comments ------------------------------------------------------------------------------------


def _add_comment(
    session: AsyncSession, ticket: Ticket, body: str, *, internal: bool, who: Principal
) -> TicketComment:
    kind, actor_id = _actor(who)
    comment = TicketComment(
        id=uuid.uuid4(),
        org_id=ticket.org_id,
        ticket_id=ticket.id,
        body=body,
        internal=internal,
        author_kind=kind,
        author_id=actor_id,
        created_at=clock.now(),
    )
    session.add(comment)
    return comment


async def add_comment(
    session: AsyncSession, who: Principal, ticket_id: uuid.UUID, data: CommentCreate
) -> TicketComment:
    org_id = who.org_id
    ticket = await _lock(session, org_id, ticket_id, None)
    comment = _add_comment(session, ticket, data.body, internal=data.internal, who=who)
    ticket.updated_at = clock.now()
    await session.flush()
    await audit.record(
        session,
        who,
        "create",
        "ticket_comment",
        comment.id,
        patient_id=ticket.patient_id,
        details={"ticket_id": str(ticket.id), "internal": data.internal},
    )
    await events.publish(
        session,
        Event(
            type="ticket.commented",
            org_id=org_id,
            payload={
                "ticket_id": str(ticket.id),
                "comment_id": str(comment.id),
                "internal": data.internal,
                "patient_id": _str(ticket.patient_id),
            },
        ),
    )
    return comment


async def list_comments(
    session: AsyncSession,
    who: Principal,
    ticket_id: uuid.UUID,
    *,
    include_internal: bool = True,
) -> list[TicketComment]:
    org_id = who.org_id
    ticket = await get(session, who, ticket_id)
    stmt = select(TicketComment).where(TicketComment.ticket_id == ticket.id, TicketComment.org_id == org_id)
    if not include_internal:
        stmt = stmt.where(TicketComment.internal.is_(False))
    return list(await session.scalars(stmt.order_by(TicketComment.created_at, TicketComment.id)))


# --- SLA -----------------------------------------------------------------------------------------


async def flag_overdue(session: AsyncSession, *, now: datetime | None = None, limit: int = 500) -> int:
    """Flag open tickets past their due time (once each) and publish `ticket.overdue` for each."""
    now = now or clock.now()
    rows = (
        await session.execute(
            select(
                Ticket.id,
                Ticket.org_id,
                Ticket.due_at,
                Ticket.priority,
                Ticket.assignee_id,
                Ticket.patient_id,
            )
            .where(Ticket.status.in_(rules.OPEN_STATUSES), Ticket.due_at <= now, Ticket.overdue_at.is_(None))
            .order_by(Ticket.due_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return 0
    # A plain UPDATE: the flag is the system's, so it does not bump the version clients hold.
    await session.execute(
        sql_update(Ticket)
        .where(Ticket.id.in_([r.id for r in rows]))
        .values(overdue_at=now)
        .execution_options(synchronize_session=False)
    )
    for r in rows:
        await events.publish(
            session,
            Event(
                type="ticket.overdue",
                org_id=r.org_id,
                payload={
                    "ticket_id": str(r.id),
                    "due_at": r.due_at.isoformat(),
                    "priority": r.priority,
                    "assignee_id": _str(r.assignee_id),
                    "patient_id": _str(r.patient_id),
                },
            ),
        )
    return len(rows)


# --- the patient record's extension points ---------------------------------------------------------


move_to_survivor = on_merge("tickets")(reassigning(Ticket))


timeline = rows_on_timeline(
    "tickets", Ticket, kind="ticket.opened", summary=lambda t: f"Ticket opened ({t.category}, {t.priority} priority)",
    data=lambda t: {"status": t.status, "priority": t.priority, "category": t.category},
)


@media.link_target("ticket")
async def media_link(session: AsyncSession, org_id: uuid.UUID, ticket_id: uuid.UUID) -> media.LinkTarget | None:
    """A file attached to a ticket belongs to the ticket's patient and conversation."""
    row = (await session.execute(
        select(Ticket.patient_id, Ticket.conversation_id).where(Ticket.org_id == org_id, Ticket.id == ticket_id)
    )).one_or_none()
    return None if row is None else media.LinkTarget(patient_id=row[0], conversation_id=row[1])


def _str(value: object | None) -> str | None:
    return str(value) if value is not None else None
