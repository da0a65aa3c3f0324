"""Twilio adapter against a respx fake of Twilio's REST API."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from prm.adapters.channels import (
    OutboundCall,
    OutboundMessage,
    PermanentDeliveryError,
    TransientDeliveryError,
)
from prm.adapters.twilio import TwilioChannel, say_twiml

BASE = "https://twilio.fake"
MESSAGES = f"{BASE}/2010-04-01/Accounts/AC123/Messages.json"
CALLS = f"{BASE}/2010-04-01/Accounts/AC123/Calls.json"


def channel() -> TwilioChannel:
    return TwilioChannel(account_sid="AC123", auth_token="tok", base_url=BASE)


def form(request: httpx.Request) -> dict[str, list[str]]:
    return parse_qs(request.content.decode())


@respx.mock
async def test_whatsapp_message_is_prefixed_and_carries_media() -> None:
    route = respx.post(MESSAGES).mock(
        return_value=httpx.Response(201, json={"sid": "SM1", "status": "queued"})
    )
    result = await channel().send_message(
        OutboundMessage(
            channel="whatsapp",
            to="+34600000001",
            from_="+34900000000",
            body="hola",
            media_urls=("https://x.test/a.jpg", "https://x.test/b.pdf"),
            status_callback="https://prm.test/cb",
        )
    )
    sent = form(route.calls.last.request)
    assert sent["To"] == ["whatsapp:+34600000001"] and sent["From"] == ["whatsapp:+34900000000"]
    assert sent["MediaUrl"] == ["https://x.test/a.jpg", "https://x.test/b.pdf"]
    assert sent["StatusCallback"] == ["https://prm.test/cb"]
    assert route.calls.last.request.headers["authorization"].startswith("Basic ")
    assert result.provider_message_id == "SM1" and result.status == "sent"


@respx.mock
async def test_template_message_sends_content_sid_and_variables_not_body() -> None:
    route = respx.post(MESSAGES).mock(
        return_value=httpx.Response(201, json={"sid": "SM2", "status": "accepted"})
    )
    await channel().send_message(
        OutboundMessage(
            channel="whatsapp",
            to="+34600000001",
            from_=None,
            body="x",
            content_sid="HX1",
            content_variables={"1": "Ana"},
        )
    )
    sent = form(route.calls.last.request)
    assert sent["ContentSid"] == ["HX1"] and json.loads(sent["ContentVariables"][0]) == {"1": "Ana"}
    assert "Body" not in sent and "From" not in sent


@pytest.mark.parametrize("status", [500, 503, 429])
@respx.mock
async def test_5xx_and_429_are_transient(status: int) -> None:
    respx.post(MESSAGES).mock(return_value=httpx.Response(status, json={"code": 20429, "message": "busy"}))
    with pytest.raises(TransientDeliveryError):
        await channel().send_message(
            OutboundMessage(channel="sms", to="+34600000001", from_="+3490", body="x")
        )


@respx.mock
async def test_timeout_is_transient() -> None:
    respx.post(MESSAGES).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientDeliveryError) as err:
        await channel().send_message(OutboundMessage(channel="sms", to="+34600000001", from_=None, body="x"))
    assert err.value.code == "timeout"


@respx.mock
async def test_connection_error_is_transient() -> None:
    respx.post(MESSAGES).mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(TransientDeliveryError):
        await channel().send_message(OutboundMessage(channel="sms", to="+34600000001", from_=None, body="x"))


@pytest.mark.parametrize("code", [21211, 21610, 63016])
@respx.mock
async def test_documented_4xx_codes_are_permanent_with_reason(code: int) -> None:
    respx.post(MESSAGES).mock(
        return_value=httpx.Response(400, json={"code": code, "message": "no", "status": 400})
    )
    with pytest.raises(PermanentDeliveryError) as err:
        await channel().send_message(
            OutboundMessage(channel="whatsapp", to="+34600000001", from_=None, body="x")
        )
    assert err.value.code == str(code) and err.value.reason


@respx.mock
async def test_non_json_error_is_still_classified() -> None:
    respx.post(MESSAGES).mock(return_value=httpx.Response(502, text="bad gateway"))
    with pytest.raises(TransientDeliveryError) as err:
        await channel().send_message(OutboundMessage(channel="sms", to="+34600000001", from_=None, body="x"))
    assert err.value.code == "http_502"


@respx.mock
async def test_voice_call_speaks_the_message() -> None:
    route = respx.post(CALLS).mock(return_value=httpx.Response(201, json={"sid": "CA1", "status": "queued"}))
    async with httpx.AsyncClient() as http:
        tw = TwilioChannel(account_sid="AC123", auth_token="tok", base_url=BASE, http=http)
        result = await tw.place_call(
            OutboundCall(to="+34600000001", from_="+34900000000", say="Hi <b>&", language="es")
        )
    sent = form(route.calls.last.request)
    assert sent["Twiml"] == ['<Response><Say language="es-ES">Hi &lt;b&gt;&amp;</Say></Response>']
    assert result.provider_message_id == "CA1"


def test_say_twiml_escapes() -> None:
    assert "&lt;" in say_twiml("<x>")
