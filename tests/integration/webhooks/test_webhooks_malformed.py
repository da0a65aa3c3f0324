"""Signed but malformed Twilio webhook forms are a 400 naming the field, never a 500 (found by fuzzing)."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.core import jobs
from prm.core.auth import Principal
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.messaging import CLINIC_NUMBER, TwilioFake, new_phone, patient_with_contacts, post_twilio

LONG = "x" * 400


def _message(**overrides: str) -> dict[str, str]:
    params = {"MessageSid": "SMfuzz1", "From": f"whatsapp:{new_phone()}", "To": f"whatsapp:{CLINIC_NUMBER}",
              "Body": "hello"}
    params.update(overrides)
    return params


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (_message(MessageSid=LONG), "MessageSid"),
        (_message(NumMedia="-1"), "NumMedia"),
        (_message(NumMedia="99999999999999999999999"), "NumMedia"),
        (_message(MessageSid="SM<script>"), "MessageSid"),
        (_message(From="whatsapp:"), "From"),
    ],
)
async def test_malformed_inbound_message_is_a_400_naming_the_field(
    anon_client: httpx.AsyncClient, twilio_org: Organisation, messaging_settings: Settings,
    params: dict[str, str], field: str,
) -> None:
    r = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/messaging", params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"MessageSid": LONG, "MessageStatus": "delivered"}, "MessageSid"),
        ({"MessageSid": "SMs1", "MessageStatus": LONG}, "MessageStatus"),
        ({"MessageSid": "SMs2", "MessageStatus": "failed", "ErrorCode": LONG}, "ErrorCode"),
        ({"MessageSid": "SMs3", "MessageStatus": "de livered"}, "MessageStatus"),
    ],
)
async def test_malformed_status_callback_is_a_400_naming_the_field(
    anon_client: httpx.AsyncClient, twilio_org: Organisation, messaging_settings: Settings,
    params: dict[str, str], field: str,
) -> None:
    r = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/status", params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field


async def test_nul_in_a_signed_form_is_a_422_naming_the_field(
    anon_client: httpx.AsyncClient, twilio_org: Organisation, messaging_settings: Settings
) -> None:
    r = await post_twilio(anon_client, messaging_settings, "/webhooks/twilio/messaging", _message(Body="a\x00b"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["errors"][0] == {"field": "Body", "in": "form", "message": r.json()["errors"][0]["message"],
                                     "type": "nul_character"}


async def test_a_long_status_error_message_is_cut_not_a_500(
    session: AsyncSession,
    client: httpx.AsyncClient,
    anon_client: httpx.AsyncClient,
    twilio_org: Organisation,
    twilio_api: TwilioFake,
    messaging_settings: Settings,
) -> None:
    patient = await patient_with_contacts(session, twilio_org)
    r = await client.post("/communications", json={"patient_id": str(patient.id), "channel": "sms", "body": "x"})
    await jobs.run_due(session)
    comm = await communications.get(session, Principal.system(twilio_org.id), r.json()["id"])
    r = await post_twilio(
        anon_client, messaging_settings, "/webhooks/twilio/status",
        {"MessageSid": comm.provider_message_id or "", "MessageStatus": "undelivered", "ErrorCode": "30003",
         "ErrorMessage": "e" * 5000},
    )
    assert r.status_code == 200, r.text
    await session.refresh(comm)
    assert (comm.status, comm.error_code, comm.error_message) == ("undelivered", "30003", "e" * 500)
