"""Scenario: booking schedules reminders; when the clock reaches one, it lands in the sandbox outbox.

appointments (reminder job) → `appointment.reminder_due` → notifications (template, channel,
consent) → communications (sandbox provider). Moving or cancelling the appointment stops the old
reminders. Time is moved, never slept. (Booking, moving and cancelling also send their own notices,
`appointment_confirmation` / `_rescheduled` / `_cancelled`, told apart here by template.)
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.appointments.schemas import AppointmentCreate
from prm.communications import sandbox
from prm.communications.models import Communication, SandboxMessage
from prm.core import clock, jobs
from prm.identity.models import Organisation
from prm.settings import Settings
from tests.fixtures.factories import principal
from tests.fixtures.messaging import messaging_settings, patient_with_contacts  # noqa: F401  (fixtures)
from tests.integration.appointments.conftest import NOW, at_local, build_clinic


async def _sent(
    session: AsyncSession, org: Organisation, patient_id: uuid.UUID, template_key: str
) -> list[SandboxMessage]:
    """The patient's sandbox deliveries of one template, oldest first."""
    rows = await session.execute(
        select(Communication.id, Communication.template_key).where(Communication.patient_id == patient_id)
    )
    keys = {cid: key for cid, key in rows.all()}
    return [
        m
        for m in await sandbox.outbox(session, org.id, patient_id=patient_id)
        if keys.get(m.communication_id) == template_key
    ]


async def test_reminder_reaches_the_sandbox_outbox_at_the_right_time(
    session: AsyncSession,
    org: Organisation,
    messaging_settings: Settings,  # noqa: F811
) -> None:
    who = principal(org)
    clinic = await build_clinic(session, org.id)
    patient = await patient_with_contacts(session, org, given_name="Dora", preferred_channel="sms")

    async def reminders() -> list[SandboxMessage]:
        return await _sent(session, org, patient.id, "appointment_reminder")

    with clock.frozen(NOW) as c:
        booked = await appointments.book(
            session,
            who,
            AppointmentCreate(
                patient_id=patient.id,
                service_id=clinic.cleaning.id,
                practitioner_id=clinic.vega.id,
                start_at=at_local(25, 10),
            ),
        )
        await jobs.run_due(session)
        assert await reminders() == []
        [confirmation] = await _sent(session, org, patient.id, "appointment_confirmation")
        assert confirmation.channel == "sms"
        assert "Wednesday 25 March 2026, 10:00" in confirmation.payload["body"]

        # one minute before the 24 h reminder: nothing; at it: one SMS with the local time
        c.set(at_local(24, 10) - timedelta(minutes=1))
        await jobs.run_due(session)
        assert await reminders() == []
        c.set(at_local(24, 10))
        await jobs.run_due(session)
        [first] = await reminders()
        assert first.channel == "sms"
        body = first.payload["body"]
        assert "Dora" in body and "Cleaning" in body and "Dr Vega" in body and "Centro" in body
        assert "Wednesday 25 March 2026, 10:00" in body

        # moved to Thursday 12:00: the old 2 h reminder (Wednesday 08:00) never goes out
        await appointments.reschedule(session, who, booked.id, start_at=at_local(26, 12))
        c.set(at_local(25, 8))
        await jobs.run_due(session)
        assert len(await reminders()) == 1
        [moved] = await _sent(session, org, patient.id, "appointment_rescheduled")
        assert "Wednesday 25 March 2026, 10:00" in moved.payload["body"]
        assert "Thursday 26 March 2026, 12:00" in moved.payload["body"]
        # the new 24 h reminder (Wednesday 12:00) does, with the new time
        c.set(at_local(25, 12))
        await jobs.run_due(session)
        sent = await reminders()
        assert len(sent) == 2 and "Thursday 26 March 2026, 12:00" in sent[-1].payload["body"]

        # cancelled: the remaining 2 h reminder is void; the patient is told of the cancellation
        await appointments.cancel(session, who, booked.id, reason="feeling better")
        c.set(at_local(26, 10))
        await jobs.run_due(session)
        assert len(await reminders()) == 2
        [cancelled] = await _sent(session, org, patient.id, "appointment_cancelled")
        assert "Thursday 26 March 2026, 12:00" in cancelled.payload["body"]
