"""The demo seeders fill the inbox with conversations and the queue with tickets."""

from __future__ import annotations

import importlib

from sqlalchemy import select

from prm.conversations.models import Conversation
from prm.tickets.models import Ticket


async def test_demo_seed_fills_inbox_and_ticket_queue(session, org) -> None:
    context: dict = {}
    for domain in ("patients", "communications", "conversations", "tickets"):
        await importlib.import_module(f"prm.{domain}.demo").seed(session, org, context)
    conversations = list(await session.scalars(select(Conversation).where(Conversation.org_id == org.id)))
    assert len(conversations) == 2 and all(c.unread_count == 1 for c in conversations)
    tickets = list(await session.scalars(select(Ticket).where(Ticket.org_id == org.id)))
    assert len(tickets) == 3
    assert {t.priority for t in tickets} == {"normal", "urgent", "low"}  # "chest pain" made one urgent
    linked = {t.conversation_id for t in tickets} - {None}
    assert len(linked) == 1 and linked <= {c.id for c in conversations}
    await importlib.import_module("prm.tickets.demo").seed(session, org, context)  # idempotent
    assert len(list(await session.scalars(select(Ticket.id).where(Ticket.org_id == org.id)))) == 3
