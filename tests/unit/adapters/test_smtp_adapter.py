"""SMTP email against a real local aiosmtpd sink."""

from __future__ import annotations

import email
import socket
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from prm.adapters.channels import Attachment, OutboundEmail, PermanentDeliveryError, TransientDeliveryError
from prm.adapters.smtp import SmtpChannel, build_message


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.envelopes: list[Any] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.envelopes.append(envelope)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


ICS = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n"


async def test_email_has_text_html_and_ics_attachment(smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    channel = SmtpChannel(host="127.0.0.1", port=port, start_tls=False)
    result = await channel.send_email(
        OutboundEmail(
            to="ana@example.org",
            from_="Clinic <clinic@example.org>",
            subject="Your visit",
            text="See you soon",
            html="<p>See you <b>soon</b></p>",
            attachments=(Attachment("visit.ics", "text/calendar", ICS),),
        )
    )
    assert result.provider == "smtp" and result.provider_message_id
    [msg] = sink.messages
    assert msg["Subject"] == "Your visit" and sink.envelopes[0].rcpt_tos == ["ana@example.org"]
    parts = {part.get_content_type(): part for part in msg.walk()}
    assert "See you soon" in parts["text/plain"].get_payload(decode=True).decode()
    assert "<b>soon</b>" in parts["text/html"].get_payload(decode=True).decode()
    assert parts["text/calendar"].get_filename() == "visit.ics"
    assert parts["text/calendar"].get_payload(decode=True) == ICS


async def test_refused_recipient_is_permanent(smtp_sink: tuple[Sink, int]) -> None:
    sink, port = smtp_sink
    sink.refuse.add("gone@example.org")
    channel = SmtpChannel(host="127.0.0.1", port=port, start_tls=False)
    with pytest.raises(PermanentDeliveryError) as err:
        await channel.send_email(
            OutboundEmail(to="gone@example.org", from_="c@example.org", subject="s", text="t")
        )
    assert err.value.code == "550"
    assert sink.messages == []


async def test_unreachable_server_is_transient() -> None:
    channel = SmtpChannel(host="127.0.0.1", port=free_port(), start_tls=False, timeout_seconds=2)
    with pytest.raises(TransientDeliveryError):
        await channel.send_email(
            OutboundEmail(to="a@example.org", from_="c@example.org", subject="s", text="t")
        )


def test_text_only_message_has_one_part() -> None:
    msg = build_message(OutboundEmail(to="a@example.org", from_="c@example.org", subject="s", text="t"))
    assert msg.get_content_type() == "text/plain"


async def test_smtp_uses_its_own_timeout_setting_not_twilios() -> None:
    """A mail server that accepts the connection and never greets: SMTP_TIMEOUT_SECONDS ends the attempt
    (a transient error), however long TWILIO_TIMEOUT_SECONDS is."""
    import asyncio

    from prm.adapters import registry
    from prm.settings import Settings

    silent: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        silent.append(writer)  # keep it open, say nothing

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    adapters = registry.Adapters(Settings(_env_file=None, smtp_host="127.0.0.1", smtp_port=port,  # type: ignore[call-arg]
                                          smtp_starttls=False, smtp_timeout_seconds=0.2, twilio_timeout_seconds=3600))
    try:
        channel = adapters.smtp()
        assert channel.timeout == 0.2
        with pytest.raises(TransientDeliveryError):
            await asyncio.wait_for(channel.send_email(
                OutboundEmail(to="a@example.org", from_="c@example.org", subject="s", text="t")), timeout=60)
    finally:
        for writer in silent:
            writer.close()
        server.close()
        await server.wait_closed()
