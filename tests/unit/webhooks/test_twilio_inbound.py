from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from prm.webhooks.twilio_inbound import (
    MalformedPayload,
    candidate_urls,
    hmac_signature,
    hmac_valid,
    parse_message,
    parse_status,
    signature_valid,
)

TOKEN = "12345"


def test_signature_checked_against_public_url() -> None:
    params = {"From": "+34600000001", "Body": "hi"}
    urls = candidate_urls("https://clinic.example/", "/webhooks/twilio/messaging")
    sig = RequestValidator(TOKEN).compute_signature(
        "https://clinic.example/webhooks/twilio/messaging", params
    )
    assert signature_valid(TOKEN, urls, params, sig)
    assert not signature_valid(TOKEN, urls, {**params, "Body": "tampered"}, sig)
    assert not signature_valid(TOKEN, urls, params, None)
    assert not signature_valid("", urls, params, sig)


def test_a_trusted_proxys_scheme_and_host_give_a_second_candidate() -> None:
    urls = candidate_urls("http://127.0.0.1:8000", "/w?x=1", "https", "prm.example.org")
    assert urls == ["http://127.0.0.1:8000/w?x=1", "https://prm.example.org/w?x=1"]
    assert candidate_urls("http://127.0.0.1:8000", "/w", None, None) == ["http://127.0.0.1:8000/w"]


def test_hmac() -> None:
    sig = hmac_signature("s3", b"{}")
    assert hmac_valid("s3", b"{}", f"sha256={sig}") and hmac_valid("s3", b"{}", sig)
    assert not hmac_valid("s3", b"{ }", sig) and not hmac_valid(None, b"{}", sig)


def test_parse_whatsapp_with_media() -> None:
    msg = parse_message(
        {
            "MessageSid": "SM1",
            "From": "whatsapp:+34600000001",
            "To": "whatsapp:+34900000000",
            "Body": "",
            "NumMedia": "1",
            "MediaUrl0": "https://api.twilio.com/m/1",
            "MediaContentType0": "image/jpeg",
            "ProfileName": "Ana",
        }
    )
    assert msg.channel == "whatsapp" and msg.from_number == "+34600000001"
    assert msg.media[0].content_type == "image/jpeg"


@pytest.mark.parametrize(
    "params,field",
    [
        ({"From": "+34600000001", "To": "+34900000000", "Body": "x"}, "MessageSid"),
        ({"MessageSid": "SM1", "To": "+34900000000", "Body": "x"}, "From"),
        (
            {
                "MessageSid": "SM1",
                "From": "+34600000001",
                "To": "+34900000000",
                "Body": "x",
                "NumMedia": "two",
            },
            "NumMedia",
        ),
        ({"MessageSid": "SM1", "From": "+34600000001", "To": "+34900000000", "NumMedia": "1"}, "MediaUrl0"),
        ({"MessageSid": "SM1", "From": "whatsapp:+34600000001", "To": "+34900000000", "Body": "x"}, "To"),
        ({"MessageSid": "SM1", "From": "12", "To": "+34900000000", "Body": "x"}, "From"),
        ({"MessageSid": "SM1", "From": "+34600000001", "To": "+34900000000", "Body": " "}, "Body"),
    ],
)
def test_malformed(params: dict[str, str], field: str) -> None:
    with pytest.raises(MalformedPayload) as err:
        parse_message(params)
    assert err.value.field == field


def test_parse_status() -> None:
    update = parse_status({"MessageSid": "SM1", "MessageStatus": "Undelivered", "ErrorCode": "30003"})
    assert update.status == "undelivered" and update.error_code == "30003"
    with pytest.raises(MalformedPayload):
        parse_status({"MessageSid": "SM1"})
