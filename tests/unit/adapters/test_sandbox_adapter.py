from __future__ import annotations

from typing import Any

from prm.adapters.channels import (
    Attachment,
    EmailChannel,
    OutboundCall,
    OutboundEmail,
    OutboundMessage,
    TextChannel,
    VoiceChannel,
)
from prm.adapters.sandbox import SandboxChannel


async def test_sandbox_records_every_payload_and_serves_every_channel_kind() -> None:
    recorded: list[tuple[str, dict[str, Any]]] = []

    async def record(channel: str, payload: dict[str, Any]) -> str:
        recorded.append((channel, payload))
        return str(len(recorded))

    sandbox = SandboxChannel(record)
    assert (
        isinstance(sandbox, TextChannel)
        and isinstance(sandbox, EmailChannel)
        and isinstance(sandbox, VoiceChannel)
    )
    r1 = await sandbox.send_message(OutboundMessage(channel="sms", to="+34600000001", from_=None, body="hi"))
    await sandbox.send_email(
        OutboundEmail(
            to="a@example.org",
            from_="c@example.org",
            subject="s",
            text="t",
            attachments=(Attachment("a.ics", "text/calendar", b"X"),),
        )
    )
    await sandbox.place_call(OutboundCall(to="+34600000001", from_=None, say="hello"))
    assert [c for c, _ in recorded] == ["sms", "email", "voice"]
    assert recorded[0][1]["body"] == "hi" and r1.provider_message_id == "SB1"
    assert recorded[1][1]["attachments"][0]["content_base64"] == "WA=="
