"""The `sandbox` provider: delivers nowhere, records every payload, the development default.

It is storage-agnostic: it hands each payload to a `record(channel, payload) -> id` coroutine.
`prm.communications` gives it one that writes to the `sandbox_outbox` table, readable at
`GET /communications/sandbox/outbox` and with `communications.sandbox.outbox(...)`.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from prm.adapters.channels import OutboundCall, OutboundEmail, OutboundMessage, SendResult

Recorder = Callable[[str, dict[str, Any]], Awaitable[str]]


class SandboxChannel:
    """`TextChannel`, `EmailChannel` and `VoiceChannel` at once."""

    name = "sandbox"

    def __init__(self, record: Recorder) -> None:
        self._record = record

    async def send_message(self, message: OutboundMessage) -> SendResult:
        payload = asdict(message)
        payload["media_urls"] = list(message.media_urls)
        ref = await self._record(message.channel, payload)
        return SendResult(provider=self.name, provider_message_id=f"SB{ref}", status="sent")

    async def send_email(self, email: OutboundEmail) -> SendResult:
        payload = asdict(email)
        payload["attachments"] = [
            {
                "filename": a.filename,
                "content_type": a.content_type,
                "content_base64": base64.b64encode(a.content).decode(),
            }
            for a in email.attachments
        ]
        ref = await self._record("email", payload)
        return SendResult(provider=self.name, provider_message_id=f"SB{ref}", status="sent")

    async def place_call(self, call: OutboundCall) -> SendResult:
        ref = await self._record("voice", asdict(call))
        return SendResult(provider=self.name, provider_message_id=f"SB{ref}", status="sent")
