"""A phone number belongs to one organisation whatever the channel (issue 9).

Observed before: organisation B could `PUT /communications/channels/whatsapp` (or `voice`) with
organisation A's SMS number and got 200; a signed inbound WhatsApp message to that number was then
stored in B.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.models import ChannelConfig, Communication
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.messaging import inbound, new_phone

PROBLEM = "application/problem+json"


def _number() -> str:
    return f"+3491{uuid.uuid4().int % 10**7:07d}"


@pytest.mark.parametrize("channel", ["whatsapp", "voice", "sms"])
async def test_another_organisation_cannot_configure_a_taken_number_on_any_channel(
    make_client, other_org: Organisation, channel: str
) -> None:
    a = await make_client("admin", for_org=other_org)
    b = await make_client("admin")
    number = _number()
    assert (await a.put("/communications/channels/sms", json={"sender": number})).status_code == 200
    # the same number, also typed differently
    for sender in (number, "00" + number[1:]):
        r = await b.put(f"/communications/channels/{channel}", json={"sender": sender})
        assert r.status_code == 409, r.text
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "sender_taken" and [e["field"] for e in r.json()["errors"]] == ["sender"]
    configs = {c["channel"]: c for c in (await b.get("/communications/channels")).json()}
    assert configs[channel]["sender"] is None


async def test_one_organisation_may_use_its_number_on_every_phone_channel(client: httpx.AsyncClient) -> None:
    number = _number()
    for channel in ("sms", "whatsapp", "voice"):
        r = await client.put(f"/communications/channels/{channel}", json={"sender": number})
        assert r.status_code == 200, r.text
    assert {c["sender"] for c in (await client.get("/communications/channels")).json()
            if c["channel"] != "email"} == {number}


async def test_the_database_refuses_a_second_owner(session: AsyncSession, org, other_org) -> None:
    """Whatever the code path: the exclusion constraint holds the line."""
    number = _number()
    session.add(ChannelConfig(org_id=org.id, channel="sms", sender=number))
    session.add(ChannelConfig(org_id=org.id, channel="whatsapp", sender=number))  # same org: fine
    await session.flush()
    with pytest.raises(IntegrityError) as info:
        async with session.begin_nested():
            session.add(ChannelConfig(org_id=other_org.id, channel="voice", sender=number))
            await session.flush()
    assert info.value.orig.diag.constraint_name == "ex_channel_configs_number_one_org"  # type: ignore[union-attr]
    # Email senders are addresses, not numbers: not concerned.
    session.add(ChannelConfig(org_id=org.id, channel="email", sender="desk@shared.example"))
    session.add(ChannelConfig(org_id=other_org.id, channel="email", sender="desk@shared.example"))
    await session.flush()


async def test_a_signed_whatsapp_message_to_the_number_reaches_its_owner_only(
    session: AsyncSession, make_client, org: Organisation, other_org: Organisation,
    anon_client: httpx.AsyncClient, messaging_settings: Settings,
) -> None:
    owner = await make_client("admin", for_org=other_org)
    intruder = await make_client("admin")
    number = _number()
    assert (await owner.put("/communications/channels/sms", json={"sender": number})).status_code == 200
    assert (await intruder.put("/communications/channels/whatsapp", json={"sender": number})).status_code == 409
    r = await inbound(anon_client, messaging_settings, from_=new_phone(), to=number, body="hola", channel="whatsapp")
    assert r.status_code == 200, r.text
    stored = list(await session.scalars(select(Communication).where(Communication.to_address == number)))
    assert [c.org_id for c in stored] == [other_org.id]


async def test_routing_never_guesses_between_two_owners(session: AsyncSession, org, other_org) -> None:
    """Rows written before the constraint (or by hand, with it dropped) make the number unroutable."""
    number = _number()
    session.add(ChannelConfig(org_id=org.id, channel="sms", sender=number))
    await session.flush()
    assert (await communications.org_for_number(session, "whatsapp", number)).org_id == org.id  # type: ignore[union-attr]
    # DDL is transactional: the test's rollback puts the constraint back.
    await session.execute(text("ALTER TABLE channel_configs DROP CONSTRAINT ex_channel_configs_number_one_org"))
    session.add(ChannelConfig(org_id=other_org.id, channel="whatsapp", sender=number))
    await session.flush()
    assert await communications.org_for_number(session, "whatsapp", number) is None
    assert await communications.org_for_number(session, "sms", number) is None
