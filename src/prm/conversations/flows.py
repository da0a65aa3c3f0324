"""Conversation flows: routing inbound messages and the booking assistant's executor.

Inbound: `route_inbound` (the `message.received` subscriber) finds or opens the patient's
conversation on the channel and locks its row (`SELECT ... FOR UPDATE`) before doing anything, so
messages for one conversation are processed strictly one after another. It attaches the message,
then — unless a person has taken over — runs the pure assistant (`assistant.handle`) and executes
its commands through the appointments and communications services, feeding every
result back until the assistant has nothing left to do (the formal booking confirmation is the
notifications module's, on the `appointment.booked` event). A message containing a configured urgent
keyword ("chest pain") goes straight to a person.

Handoff (asked for, repeated misunderstanding, failed action, urgent keyword): a ticket is opened
(and auto-assigned), the conversation is assigned to the same person and the assistant goes
silent until someone hands the conversation back to the bot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.appointments import service as appointments
from prm.appointments.schemas import AppointmentCreate
from prm.communications import rules as communication_rules
from prm.communications import service as communications
from prm.communications.schemas import CommunicationCreate
from prm.conversations import assistant, texts
from prm.conversations.inbox import HANDOFF_CATEGORY, add_message, open_for
from prm.conversations.models import CHANNELS, Conversation
from prm.core import clock, events
from prm.core.auth import Principal
from prm.core.errors import Conflict, DomainError, ValidationFailed
from prm.core.events import Event
from prm.identity import service as identity
from prm.patients import service as patients
from prm.settings import Settings
from prm.tickets import rules as ticket_rules
from prm.tickets import service as tickets
from prm.tickets.schemas import TicketCreate

if TYPE_CHECKING:
    from prm.communications.models import Communication
    from prm.patients.models import Patient

log = structlog.get_logger(__name__)
SLOT_CHUNK_DAYS = 3  # slots are computed this many days at a time until the offer is full


def policy(s: Settings) -> assistant.Policy:
    return assistant.Policy(
        max_failures=s.assistant_max_failures,
        stale_after=timedelta(minutes=s.assistant_stale_minutes),
        slots_per_offer=s.assistant_slots_per_offer,
        search_days=s.assistant_search_days,
    )


# --- inbound routing and the assistant -------------------------------------------------------------


async def route_inbound(
    session: AsyncSession, org_id: uuid.UUID, communication_id: uuid.UUID
) -> Conversation | None:
    """Put an inbound message into its conversation (under the row lock) and let the assistant answer.

    Idempotent: a message already attached to a conversation is not processed again.
    """
    comm = await communications.find(session, org_id, communication_id)
    if comm is None or comm.direction != "inbound" or comm.channel not in CHANNELS:
        return None
    conversation = await open_for(session, org_id, comm.patient_id, comm.channel)
    # Re-read under the lock: a concurrent delivery of the same event may have attached it meanwhile.
    await session.refresh(comm, ["conversation_id"])
    if comm.conversation_id is not None:
        return conversation
    await add_message(session, conversation, comm)
    s = context.of(session).settings
    if conversation.bot_active and s.assistant_enabled:
        await run_assistant(session, conversation, comm.body or "", settings=s)
    return conversation


async def run_assistant(
    session: AsyncSession, conversation: Conversation, text: str, *, settings: Settings | None = None
) -> None:
    """One inbound message through the assistant, executing its commands until it is done."""
    s = settings or context.of(session).settings
    patient = await patients.get(session, conversation.org_id, conversation.patient_id)
    urgent = ticket_rules.urgent_keywords_in(text, s.ticket_urgent_keywords)
    run = _Run(
        session=session,
        conversation=conversation,
        patient=patient,
        text=text,
        facts=await _facts(session, conversation, patient),
        policy=policy(s),
    )
    if urgent:
        await run.send(_handoff_text(run.facts.locale))
        await run.handoff("urgent")
        return
    if not run.facts.services:
        # No online booking in this organisation: the message waits in the inbox for a person.
        log.info("conversations.assistant_idle", reason="no_bookable_services")
        return
    pending: list[assistant.Event] = [assistant.Inbound(text)]
    for _ in range(20):  # a turn settles in a few steps; the bound only guards against a bug looping
        if not pending:
            break
        out = assistant.handle(
            conversation.bot_state,
            conversation.bot_context,
            pending.pop(0),
            run.facts,
            clock.now(),
            run.policy,
        )
        conversation.bot_state, conversation.bot_context = out.state, out.context
        for message in out.replies:
            await run.send(message)
        for command in out.commands:
            result = await run.execute(command)
            if result is not None:
                pending.append(result)
    await session.flush()


def _handoff_text(locale: str) -> str:
    return texts.render("handoff", locale)


async def _facts(session: AsyncSession, conversation: Conversation, patient: Patient) -> assistant.Facts:
    org_id = conversation.org_id
    org = await identity.find_organisation_by_id(session, org_id)
    services = await appointments.list_services(session, org_id)
    names = {s.id: s.name for s in services}
    upcoming = []
    for a in await appointments.upcoming_for_patient(session, Principal.system(org_id), patient.id):
        if a.service_id not in names:
            names[a.service_id] = (await appointments.get_service(session, org_id, a.service_id)).name
        upcoming.append(
            assistant.Appointment(
                id=str(a.id),
                start_at=a.start_at,
                service_id=str(a.service_id),
                service_name=names[a.service_id],
            )
        )
    return assistant.Facts(
        services=tuple(
            assistant.Service(id=str(s.id), name=s.name, keywords=tuple(s.keywords or ())) for s in services
        ),
        upcoming=tuple(upcoming),
        timezone=patient.timezone or (org.timezone if org else "UTC") or "UTC",
        locale=patient.preferred_language or "en",
        patient_name=(patient.given_name or None) if not patient.is_provisional else None,
        clinic_name=org.name if org else "the clinic",
    )


@dataclass
class _Run:
    """Executes the assistant's commands for one conversation through the services."""

    session: AsyncSession
    conversation: Conversation
    patient: Patient
    text: str
    facts: assistant.Facts
    policy: assistant.Policy
    consented: bool = False  # a reply of this run was sent: the patient's consent holds for the next

    @property
    def org_id(self) -> uuid.UUID:
        return self.conversation.org_id

    @property
    def who(self) -> Principal:
        return Principal.system(self.org_id)

    async def send(self, body: str) -> Communication | None:
        try:
            # no savepoint: communications.send refuses (consent, window, a disabled channel) before it
            # writes anything, so a refusal leaves nothing to undo
            comm = await communications.send(
                self.session,
                self.who,
                CommunicationCreate(
                    patient_id=self.patient.id,
                    channel=self.conversation.channel,  # type: ignore[arg-type]
                    body=body,
                    conversation_id=self.conversation.id,
                ),
                # the patient and the (locked) conversation this run already holds; the window is
                # open when the conversation's last inbound message (a message of this patient on
                # this channel) is recent, else communications asks the database
                prechecked=communications.Prechecked(
                    patient=self.patient, conversation=True, consent=self.consented,
                    window=self.conversation.channel == "whatsapp" and communication_rules.whatsapp_window_open(
                        self.conversation.last_inbound_at, clock.now())),
                created_by="assistant",
            )
        except DomainError as exc:  # no consent, window closed ...: nothing was sent; a person will see it
            log.warning(
                "conversations.reply_refused", conversation_id=str(self.conversation.id), code=exc.code
            )
            return None
        self.consented = True  # (nothing in this transaction changes it: the same channel and purpose)
        await add_message(self.session, self.conversation, comm)
        return comm

    async def execute(self, command: assistant.Command) -> assistant.Event | None:
        if isinstance(command, assistant.FetchSlots):
            return await self.fetch_slots(command)
        if isinstance(command, assistant.Book):
            return await self.book(command.slot)
        if isinstance(command, assistant.Reschedule):
            return await self.book(command.slot, reschedule_id=command.appointment_id)
        if isinstance(command, assistant.Cancel):
            return await self.cancel(command.appointment_id)
        if isinstance(command, assistant.SendConfirmation):
            await self.confirm(command)
            return None
        if isinstance(command, assistant.Handoff):
            await self.handoff(command.reason)
        return None

    async def fetch_slots(self, cmd: assistant.FetchSlots) -> assistant.Event:
        """Open slots in the window, earliest first, computed a few days at a time until enough."""
        tz = ZoneInfo(self.facts.timezone)
        day = cmd.start_at.astimezone(tz).date()
        last_day = (cmd.end_at - timedelta(microseconds=1)).astimezone(tz).date()
        service_id = uuid.UUID(cmd.service_id)
        try:
            service = await appointments.get_service(self.session, self.org_id, service_id)
        except DomainError as exc:
            return assistant.ActionFailed(exc.code)
        names = {p.id: p.name for p in service.practitioners}
        slots: list[assistant.Slot] = []
        while day <= last_day and len(slots) < cmd.limit:
            chunk_end = min(last_day, day + timedelta(days=SLOT_CHUNK_DAYS - 1))
            try:
                found = await appointments.available_slots(
                    self.session, self.org_id, service_id=service_id, start_date=day, end_date=chunk_end
                )
            except DomainError as exc:
                return assistant.ActionFailed(exc.code)
            slots.extend(islice((  # only as many as still wanted: a chunk of a busy clinic holds thousands
                assistant.Slot(
                    start_at=s.start_at,
                    end_at=s.end_at,
                    practitioner_id=str(s.practitioner_id),
                    service_id=cmd.service_id,
                    location_id=str(s.location_id),
                    practitioner_name=names.get(s.practitioner_id),
                )
                for s in found
                if cmd.start_at <= s.start_at < cmd.end_at
            ), cmd.limit - len(slots)))
            day = chunk_end + timedelta(days=1)
        return assistant.SlotsFound(cmd, tuple(slots[: cmd.limit]))

    async def book(self, slot: assistant.Slot, *, reschedule_id: str | None = None) -> assistant.Event:
        try:
            async with self.session.begin_nested():
                if reschedule_id is None:
                    appointment = await appointments.book(
                        self.session,
                        self.who,
                        AppointmentCreate(
                            patient_id=self.patient.id,
                            service_id=uuid.UUID(slot.service_id),
                            practitioner_id=uuid.UUID(slot.practitioner_id),
                            location_id=uuid.UUID(slot.location_id) if slot.location_id else None,
                            start_at=slot.start_at,
                            source=self.conversation.channel,
                        ),
                    )
                else:
                    appointment = await appointments.reschedule(
                        self.session,
                        self.who,
                        uuid.UUID(reschedule_id),
                        start_at=slot.start_at,
                        practitioner_id=uuid.UUID(slot.practitioner_id),
                        location_id=uuid.UUID(slot.location_id) if slot.location_id else None,
                        reason=f"requested by the patient on {self.conversation.channel}",
                    )
        except Conflict as exc:
            return assistant.BookingFailed("slot_taken" if exc.code == "slot_taken" else exc.code)
        except ValidationFailed as exc:  # the slot is no longer bookable (notice, availability changed)
            return assistant.BookingFailed("slot_taken" if _is_start_problem(exc) else exc.code)
        except DomainError as exc:
            return assistant.BookingFailed(exc.code)
        return assistant.Booked(await self.as_fact(appointment), rescheduled=reschedule_id is not None)

    async def cancel(self, appointment_id: str) -> assistant.Event:
        try:
            async with self.session.begin_nested():
                appointment = await appointments.cancel(
                    self.session,
                    self.who,
                    uuid.UUID(appointment_id),
                    reason=f"cancelled by the patient on {self.conversation.channel}",
                )
        except DomainError as exc:
            return assistant.ActionFailed(exc.code)
        return assistant.Cancelled(await self.as_fact(appointment))

    async def as_fact(self, appointment: Any) -> assistant.Appointment:
        service = await appointments.get_service(self.session, self.org_id, appointment.service_id)
        return assistant.Appointment(id=str(appointment.id), start_at=appointment.start_at,
                                     service_id=str(appointment.service_id), service_name=service.name)

    async def confirm(self, cmd: assistant.SendConfirmation) -> None:
        """Answer in the chat that the appointment is booked or moved (the assistant's own text).

        The formal notice (`appointment_confirmation`, `appointment_rescheduled`) is not sent here:
        the notifications module sends it for every booking, whatever its source, when the
        `appointment.booked` / `.rescheduled` event is delivered (on the patient's preferred
        channel, unless the organisation turned it off) — so the patient gets it once."""
        await self.send(cmd.text)

    async def handoff(self, reason: str) -> None:
        conversation = self.conversation
        conversation.bot_active = False
        conversation.bot_state, conversation.bot_context = assistant.HANDOFF, {"handoff_reason": reason}
        conversation.handoff_reason = reason
        conversation.status = "open"
        subject = _HANDOFF_SUBJECTS.get(reason, _HANDOFF_SUBJECTS["requested"])
        ticket = await tickets.create(
            self.session,
            self.who,
            TicketCreate(
                subject=f"{subject} ({conversation.channel})",
                description=f"Last message from the patient:\n{self.text}",
                category=HANDOFF_CATEGORY,
                priority="high" if reason == "urgent" else "normal",
                patient_id=self.patient.id,
                conversation_id=conversation.id,
                tags=["handoff", reason.replace("_", "-")],
            ),
            source="bot_handoff",
        )
        conversation.assignee_id = ticket.assignee_id
        await self.session.flush()
        await events.publish(
            self.session,
            Event(
                type="conversation.handed_off",
                org_id=self.org_id,
                payload={
                    "conversation_id": str(conversation.id),
                    "patient_id": str(self.patient.id),
                    "reason": reason,
                    "ticket_id": str(ticket.id),
                    "assignee_id": str(ticket.assignee_id) if ticket.assignee_id else None,
                },
            ),
        )


_HANDOFF_SUBJECTS = {
    "requested": "Patient asked to talk to a person",
    "not_understood": "Booking assistant could not understand the patient",
    "action_failed": "Booking assistant could not complete an action",
    "no_services": "Patient wants to book but no service is bookable online",
    "urgent": "Urgent message from a patient",
}


def _is_start_problem(exc: ValidationFailed) -> bool:
    return any(e.get("field") == "start_at" for e in (exc.errors or []))
