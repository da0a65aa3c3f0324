"""Demo data: sandbox channels with clinic numbers and a couple of WhatsApp conversations."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service
from prm.communications.schemas import ChannelConfigWrite, CommunicationCreate
from prm.core.auth import Principal
from prm.core.errors import Conflict
from prm.patients import service as patients

DEMO_NUMBER = "+15005550006"  # Twilio's magic "valid" test number
CONVERSATIONS = [
    (
        "+15005550101",
        "Hi, can I move my appointment to Friday?",
        "Of course. Friday at 10:00 or 16:30 are free. Which one suits you?",
    ),
    (
        "+15005550102",
        "Do I need to fast before the blood test?",
        "Yes, please do not eat for 8 hours before the test. Water is fine.",
    ),
]


async def seed(session: AsyncSession, org: Any, context: dict[str, Any]) -> None:
    who = Principal.system(org.id)
    for channel in ("sms", "whatsapp", "voice"):
        if await service.channel_config(session, org.id, channel) is None:
            # the number can belong to one organisation only; another demo clinic may hold it already
            try:
                async with session.begin_nested():
                    await service.put_channel_config(
                        session,
                        who,
                        channel,
                        ChannelConfigWrite(provider="sandbox", sender=DEMO_NUMBER),
                    )
            except Conflict:
                await service.put_channel_config(session, who, channel, ChannelConfigWrite(provider="sandbox"))
    if await service.channel_config(session, org.id, "email") is None:
        await service.put_channel_config(
            session,
            who,
            "email",
            ChannelConfigWrite(provider="sandbox", sender="hello@demo-clinic.example", sender_name="Demo Clinic"),
        )
    comms = []
    for phone, question, answer in CONVERSATIONS:
        patient = await patients.find_by_phone(session, org.id, phone) or await patients.create_provisional(
            session, org.id, phone=phone, source="whatsapp"
        )
        comms.append(
            await service.record_inbound(
                session,
                org.id,
                patient_id=patient.id,
                channel="whatsapp",
                body=question,
                from_address=phone,
                to_address=DEMO_NUMBER,
                provider="sandbox",
                provider_message_id=None,
            )
        )
        comms.append(
            await service.send(
                session,
                who,
                CommunicationCreate(patient_id=patient.id, channel="whatsapp", body=answer),
            )
        )
    context["communications"] = comms
