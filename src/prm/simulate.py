"""`prm simulate`: play a patient against a running service, for trying inbound messaging locally.

A message is posted to the service's Twilio webhook exactly as Twilio would post it (form fields and
an `X-Twilio-Signature` computed with the Twilio SDK's `RequestValidator` and the webhook token, see
`Settings.twilio_webhook_token`). The assistant's answers are then read from the database: the
replies it attached to the conversation, with what the `sandbox` provider recorded for them.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass, field
from xml.etree import ElementTree

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.request_validator import RequestValidator

from prm.communications.models import ChannelConfig, Communication, SandboxMessage
from prm.core.db import Database, resolve_database_url
from prm.patients.phones import try_normalise
from prm.settings import Settings

POLL_SECONDS = 0.25


class SimulationError(Exception):
    """The simulation could not be run or got no answer (the message says why, in one line)."""


@dataclass
class Simulation:
    message_sid: str
    to_number: str
    webhook_reply: str | None = None  # TwiML <Message> (STOP/START acknowledgements)
    replies: list[str] = field(default_factory=list)
    routed: bool = False


def _sid() -> str:
    return "SM" + uuid.uuid4().hex  # 34 characters, like Twilio's


def _twiml_message(text: str) -> str | None:
    try:
        root = ElementTree.fromstring(text)  # noqa: S314 - our own service's TwiML
    except ElementTree.ParseError:
        return None
    message = root.find("Message")
    return message.text if message is not None else None


async def _default_to(session: AsyncSession, channel: str) -> str:
    number = await session.scalar(
        select(ChannelConfig.sender)
        .where(ChannelConfig.channel == channel, ChannelConfig.sender.is_not(None), ChannelConfig.enabled.is_(True))
        .order_by(ChannelConfig.created_at)
        .limit(1)
    )
    if number is None:
        raise SimulationError(f"no organisation has a {channel} number: pass --to, or seed the demo clinic (prm demo)")
    return number


async def whatsapp(
    settings: Settings,
    *,
    from_phone: str,
    body: str,
    to_phone: str | None = None,
    base_url: str | None = None,
    timeout_seconds: float = 30.0,
    channel: str = "whatsapp",
) -> Simulation:
    """Post one signed inbound message and wait (at most `timeout_seconds`) for the assistant's answer."""
    token = settings.twilio_webhook_token()
    if not token:
        raise SimulationError("no Twilio auth token: set TWILIO_AUTH_TOKEN (one is generated only in development)")
    sender = try_normalise(from_phone, settings.default_phone_region)
    if sender is None:
        raise SimulationError(f"--from: {from_phone!r} is not a valid phone number (use E.164, e.g. +34600000000)")
    db = Database.connect(resolve_database_url(settings), pool_size=1, max_overflow=0)
    try:
        async with db.sessionmaker() as session:
            to_number = to_phone or await _default_to(session, channel)
        receiver = try_normalise(to_number, settings.default_phone_region)
        if receiver is None:
            raise SimulationError(f"--to: {to_number!r} is not a valid phone number")
        prefix = "whatsapp:" if channel == "whatsapp" else ""
        sim = Simulation(message_sid=_sid(), to_number=receiver)
        params = {
            "MessageSid": sim.message_sid,
            "AccountSid": settings.twilio_account_sid or "AC" + "0" * 32,
            "From": prefix + sender,
            "To": prefix + receiver,
            "Body": body,
            "NumMedia": "0",
        }
        url = (base_url or settings.public_base_url).rstrip("/") + "/webhooks/twilio/messaging"
        signature = RequestValidator(token).compute_signature(url, params)
        try:
            async with httpx.AsyncClient(timeout=timeout_seconds) as client:
                response = await client.post(url, data=params, headers={"X-Twilio-Signature": signature})
        except httpx.HTTPError as exc:
            raise SimulationError(f"cannot reach the service at {url} ({type(exc).__name__}): is `prm serve` running?")
        if response.status_code != 200:
            detail = response.text[:300]
            if response.headers.get("content-type", "").startswith("application/problem+json"):
                detail = response.json().get("detail", detail)
            raise SimulationError(f"the webhook answered {response.status_code}: {detail}")
        sim.webhook_reply = _twiml_message(response.text)
        await _wait_for_replies(db, sim, timeout_seconds)
        return sim
    finally:
        await db.dispose()


async def _wait_for_replies(db: Database, sim: Simulation, timeout_seconds: float) -> None:
    """Poll until the message is in its conversation and every reply the assistant made to it was
    delivered (or failed), or until the timeout."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    while True:
        async with db.sessionmaker() as session:
            done = await _collect(session, sim)
        if done:
            return
        if loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if sim.webhook_reply is not None:
        return  # a keyword (STOP/START) was answered in the webhook itself
    if not sim.routed:
        raise SimulationError(
            f"no answer within {timeout_seconds:g} s: the message was not routed to a conversation "
            "(is a worker running? `prm serve` runs one unless --no-worker; else `prm worker`)"
        )
    raise SimulationError(f"the assistant's reply was not delivered within {timeout_seconds:g} s")


async def _collect(session: AsyncSession, sim: Simulation) -> bool:
    inbound = await session.scalar(
        select(Communication).where(
            Communication.provider == "twilio",
            Communication.provider_message_id == sim.message_sid,
            Communication.direction == "inbound",
        )
    )
    if inbound is None or inbound.conversation_id is None:
        return False
    sim.routed = True
    replies = list(
        await session.scalars(
            select(Communication)
            .where(
                Communication.org_id == inbound.org_id,
                Communication.conversation_id == inbound.conversation_id,
                Communication.direction == "outbound",
                Communication.created_at >= inbound.created_at,
            )
            .order_by(Communication.created_at, Communication.id)
        )
    )
    recorded = {
        row.communication_id: row
        for row in await session.scalars(
            select(SandboxMessage).where(
                SandboxMessage.org_id == inbound.org_id,
                SandboxMessage.communication_id.in_([r.id for r in replies]),
            )
        )
    }
    texts: list[str] = []
    for reply in replies:
        row = recorded.get(reply.id)
        if row is not None:
            texts.append(str(row.payload.get("body", reply.body or "")))
        elif reply.status == "failed":
            texts.append(f"[not delivered: {reply.error_code or 'failed'}] {reply.body or ''}")
        elif reply.provider not in (None, "sandbox") and reply.status in ("sent", "delivered", "read"):
            texts.append(reply.body or "")  # a real provider took it: nothing in the sandbox outbox
        else:
            return False  # still on its way
    sim.replies = texts
    return True


def phone_argument(value: str) -> str:
    """Accept `whatsapp:+34...` as well as a bare number."""
    return re.sub(r"^(whatsapp|sms):", "", value.strip())
