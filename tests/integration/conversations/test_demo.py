"""The whole demo clinic seeds, with conversations in the inbox and tickets in the queue."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from prm import demo
from prm.conversations.models import Conversation
from prm.identity.models import Organisation
from prm.tickets.models import Ticket


async def test_demo_seed_fills_inbox_and_ticket_queue(session) -> None:
    existing = await session.scalar(select(Organisation).where(Organisation.slug == demo.DEMO_SLUG))
    if existing is not None:  # another test committed a demo clinic: give it a new slug in this transaction
        existing.slug = f"old-demo-{uuid.uuid4().hex[:6]}"
        await session.flush()
    created = await demo.seed_if_empty(session)
    assert created is not None
    org_id = uuid.UUID(created["org_id"])
    conversations = list(await session.scalars(select(Conversation).where(Conversation.org_id == org_id)))
    assert len(conversations) == 2 and all(c.unread_count == 1 for c in conversations)
    tickets = list(await session.scalars(select(Ticket).where(Ticket.org_id == org_id)))
    assert len(tickets) == 3
    assert {t.priority for t in tickets} == {"normal", "urgent", "low"}
    assert any(t.conversation_id == conversations[0].id or t.conversation_id == conversations[1].id
               for t in tickets)
