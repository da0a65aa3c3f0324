"""The tool catalogue. Each tool is narrow and typed and calls the same service functions as the
API, so authorisation (the scope), validation, idempotency and audit are the API's own."""

from __future__ import annotations

import html
import re
import uuid
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context
from prm.agents.registry import tool
from prm.appointments import service as appointments
from prm.appointments.schemas import AppointmentCreate
from prm.core import audit
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.core.pagination import PageParams
from prm.notifications import service as notifications
from prm.patients import service as patients
from prm.patients.schemas import EmailIn, PatientUpdate, PhoneIn
from prm.settings import Settings
from prm.tickets import service as tickets
from prm.tickets.schemas import CommentCreate, TicketCreate
from prm.vector import service as search

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- patients ----------------------------------------------------------------------------------


class PatientSummary(BaseModel):
    id: uuid.UUID
    given_name: str
    family_name: str
    birth_date: date | None
    status: str


class SearchPatientsIn(_In):
    q: str | None = Field(default=None, max_length=200, description="Fuzzy, accent-insensitive name search")
    phone: str | None = Field(default=None, max_length=40)
    email: str | None = Field(default=None, max_length=320)
    birth_date: date | None = None
    limit: int = Field(default=10, ge=1, le=20)


class SearchPatientsOut(BaseModel):
    patients: list[PatientSummary]
    total: int
    total_exact: bool = Field(True, description="false when a one-word name search matched more than `total` "
                                                "patients (it stops counting there): narrow the search")


@tool("search_patients", scope="patients:read", input=SearchPatientsIn, output=SearchPatientsOut, writes=False,
      description="Find patients by name (fuzzy), phone, email or birth date. Returns ids and names only.")
async def search_patients(session: AsyncSession, who: Principal, data: SearchPatientsIn,
                          settings: Settings) -> SearchPatientsOut:
    if not any((data.q, data.phone, data.email, data.birth_date)):
        raise ValidationFailed.field("q", "give a name, phone, email or birth date to search by")
    filters = patients.Filters(q=data.q, phone=data.phone, email=data.email, birth_date=data.birth_date)
    found = await patients.search_page(session, who, filters, PageParams(limit=data.limit, offset=0))
    for row in found.rows:
        await audit.record(session, who, "read", "patient", row.id, patient_id=row.id, details={"via": "agent"})
    return SearchPatientsOut(patients=[PatientSummary.model_validate(r, from_attributes=True) for r in found.rows],
                             total=found.total, total_exact=found.total_exact)


class PatientRef(_In):
    patient_id: uuid.UUID


class PatientOut(PatientSummary):
    gender: str | None
    preferred_language: str | None
    preferred_channel: str | None
    timezone: str | None
    phones: list[str]
    emails: list[str]


@tool("get_patient", scope="patients:read", input=PatientRef, output=PatientOut, writes=False,
      description="A patient's demographics, contact points and preferences.")
async def get_patient(session: AsyncSession, who: Principal, data: PatientRef, settings: Settings) -> PatientOut:
    patient = await patients.get(session, who.org_id, data.patient_id, with_contacts=True)
    await audit.record(session, who, "read", "patient", patient.id, patient_id=patient.id, details={"via": "agent"})
    return PatientOut(id=patient.id, given_name=patient.given_name, family_name=patient.family_name,
                      birth_date=patient.birth_date, status=patient.status, gender=patient.gender,
                      preferred_language=patient.preferred_language, preferred_channel=patient.preferred_channel,
                      timezone=patient.timezone, phones=[p.number for p in patient.phones],
                      emails=[e.email for e in patient.emails])


class UpdatePatientIn(_In):
    """Contact fields and preferences only: identity fields change through staff, not agents."""

    patient_id: uuid.UUID
    phones: list[PhoneIn] | None = Field(default=None, max_length=10, description="Replaces the whole list")
    emails: list[EmailIn] | None = Field(default=None, max_length=10, description="Replaces the whole list")
    preferred_language: str | None = Field(default=None, max_length=35)
    preferred_channel: Literal["sms", "whatsapp", "email", "voice"] | None = None
    timezone: str | None = Field(default=None, max_length=64)


@tool("update_patient", scope="patients:write", input=UpdatePatientIn, output=PatientOut, writes=True,
      description="Change a patient's phones, emails, preferred language/channel or time zone.")
async def update_patient(session: AsyncSession, who: Principal, data: UpdatePatientIn,
                         settings: Settings) -> PatientOut:
    changes = data.model_dump(exclude_unset=True, exclude={"patient_id"})
    if not changes:
        raise ValidationFailed.field("patient_id", "nothing to change: send at least one field")
    await patients.update(session, who, data.patient_id, PatientUpdate(**changes))
    updated = await get_patient(session, who, PatientRef(patient_id=data.patient_id), settings)
    assert isinstance(updated, PatientOut)
    return updated


# --- scheduling --------------------------------------------------------------------------------


class FindSlotsIn(_In):
    service_id: uuid.UUID
    start_date: date
    end_date: date | None = Field(default=None, description="Inclusive; at most 14 days after start_date")
    practitioner_id: uuid.UUID | None = None
    limit: int = Field(default=10, ge=1, le=50)


class SlotOut(BaseModel):
    start_at: datetime
    end_at: datetime
    local_start: datetime
    timezone: str
    practitioner_id: uuid.UUID
    location_id: uuid.UUID


class FindSlotsOut(BaseModel):
    slots: list[SlotOut]


@tool("find_slots", scope="appointments:read", input=FindSlotsIn, output=FindSlotsOut, writes=False,
      description="Bookable start times of a service (optionally with one practitioner), earliest first.")
async def find_slots(session: AsyncSession, who: Principal, data: FindSlotsIn, settings: Settings) -> FindSlotsOut:
    end = data.end_date or data.start_date + timedelta(days=7)
    if end - data.start_date > timedelta(days=14):
        raise ValidationFailed.field("end_date", "at most 14 days after start_date")
    found = await appointments.available_slots(session, who.org_id, service_id=data.service_id,
                                               start_date=data.start_date, end_date=end,
                                               practitioner_id=data.practitioner_id, limit=data.limit)
    return FindSlotsOut(slots=[SlotOut(start_at=s.start_at, end_at=s.end_at, local_start=s.local_start,
                                       timezone=s.timezone, practitioner_id=s.practitioner_id,
                                       location_id=s.location_id) for s in found])


class AppointmentOut(BaseModel):
    id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    service_id: uuid.UUID
    status: str
    start_at: datetime
    end_at: datetime


def _appointment(row: object) -> AppointmentOut:
    return AppointmentOut.model_validate(row, from_attributes=True)


class BookIn(_In):
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    service_id: uuid.UUID
    start_at: AwareDatetime
    location_id: uuid.UUID | None = None
    notes: str = Field(default="", max_length=2000)


@tool("book_appointment", scope="appointments:write", input=BookIn, output=AppointmentOut, writes=True,
      description="Book a patient into a free slot (from find_slots). 409 when the time is taken.")
async def book_appointment(session: AsyncSession, who: Principal, data: BookIn, settings: Settings) -> AppointmentOut:
    created = await appointments.book(session, who, AppointmentCreate(**data.model_dump(), source="agent"))
    return _appointment(created)


class AppointmentRef(_In):
    appointment_id: uuid.UUID


@tool("confirm_appointment", scope="appointments:write", input=AppointmentRef, output=AppointmentOut, writes=True,
      description="Mark a booked appointment as confirmed by the patient.")
async def confirm_appointment(session: AsyncSession, who: Principal, data: AppointmentRef,
                              settings: Settings) -> AppointmentOut:
    return _appointment(await appointments.transition(session, who, data.appointment_id, "confirm"))


class CancelIn(_In):
    appointment_id: uuid.UUID
    reason: Text


@tool("cancel_appointment", scope="appointments:write", input=CancelIn, output=AppointmentOut, writes=True,
      description="Cancel a booked or confirmed appointment, with the reason.")
async def cancel_appointment(session: AsyncSession, who: Principal, data: CancelIn,
                             settings: Settings) -> AppointmentOut:
    return _appointment(await appointments.cancel(session, who, data.appointment_id, reason=data.reason))


class RescheduleIn(_In):
    appointment_id: uuid.UUID
    start_at: AwareDatetime
    practitioner_id: uuid.UUID | None = None
    reason: str | None = Field(default=None, max_length=300)


@tool("reschedule_appointment", scope="appointments:write", input=RescheduleIn, output=AppointmentOut, writes=True,
      description="Move an appointment to another free time (and optionally practitioner).")
async def reschedule_appointment(session: AsyncSession, who: Principal, data: RescheduleIn,
                                 settings: Settings) -> AppointmentOut:
    return _appointment(await appointments.reschedule(
        session, who, data.appointment_id, start_at=data.start_at, practitioner_id=data.practitioner_id,
        reason=data.reason))


# --- tickets and messages ----------------------------------------------------------------------


class CreateTicketIn(_In):
    subject: Text
    description: str = Field(default="", max_length=20_000)
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    category: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")] = \
        "general"
    patient_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None


class TicketOut(BaseModel):
    id: uuid.UUID
    subject: str
    status: str
    priority: str
    assignee_id: uuid.UUID | None


@tool("create_ticket", scope="tickets:write", input=CreateTicketIn, output=TicketOut, writes=True,
      description="Open a ticket for staff (auto-assigned; urgent keywords raise the priority).")
async def create_ticket(session: AsyncSession, who: Principal, data: CreateTicketIn, settings: Settings) -> TicketOut:
    ticket = await tickets.create(session, who, TicketCreate(**data.model_dump()), source="agent")
    return TicketOut.model_validate(ticket, from_attributes=True)


class CommentIn(_In):
    ticket_id: uuid.UUID
    body: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    internal: bool = True


class CommentOut(BaseModel):
    id: uuid.UUID
    ticket_id: uuid.UUID
    internal: bool


@tool("add_ticket_comment", scope="tickets:write", input=CommentIn, output=CommentOut, writes=True,
      description="Add a comment (internal by default) to a ticket.")
async def add_ticket_comment(session: AsyncSession, who: Principal, data: CommentIn, settings: Settings) -> CommentOut:
    comment = await tickets.add_comment(session, who, data.ticket_id,
                                        CommentCreate(body=data.body, internal=data.internal))
    return CommentOut(id=comment.id, ticket_id=data.ticket_id, internal=comment.internal)


VariableName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
VariableValue = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool


class SendNotificationIn(_In):
    patient_id: uuid.UUID
    template_key: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    channel: Literal["sms", "whatsapp", "email", "voice"] | None = Field(
        default=None, description="Null: the patient's preferred channel, with fallback")
    variables: dict[VariableName, VariableValue] = Field(default_factory=dict, max_length=50)


class NotificationOut(BaseModel):
    communication_id: uuid.UUID
    channel: str
    status: str


@tool("send_notification", scope="notifications:write", input=SendNotificationIn, output=NotificationOut,
      writes=True, description="Send a message template to a patient; consent and the WhatsApp 24-hour window "
      "are respected (409/422 otherwise).")
async def send_notification(session: AsyncSession, who: Principal, data: SendNotificationIn,
                            settings: Settings) -> NotificationOut:
    comm = await notifications.send_notification(session, who, patient_id=data.patient_id,
                                                 template_key=data.template_key, variables=dict(data.variables),
                                                 channel=data.channel)
    return NotificationOut(communication_id=comm.id, channel=comm.channel, status=comm.status)


# --- semantic search ---------------------------------------------------------------------------

ConversationSource = Literal["conversation", "voice_call", "message"]


class SearchConversationsIn(_In):
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] = Field(
        description="Words, \"a phrase\", -excluded, or a question; matched by meaning and by words")
    patient_id: uuid.UUID | None = Field(default=None, description="Only this patient's conversations and calls")
    source_types: list[ConversationSource] = Field(
        default_factory=list, max_length=3, description="conversation, voice_call, message (empty: all three)")
    channels: list[Literal["whatsapp", "sms", "email", "voice"]] = Field(default_factory=list, max_length=4)
    occurred_from: AwareDatetime | None = None
    occurred_to: AwareDatetime | None = None
    limit: int = Field(default=5, ge=1, le=20)


class ConversationHit(BaseModel):
    source_type: str
    source_id: uuid.UUID
    patient_id: uuid.UUID | None
    channel: str | None
    occurred_at: datetime
    snippet: str = Field(description="Plain text around the match")
    score: float
    link: str = Field(description="API path of the source")


class SearchConversationsOut(BaseModel):
    hits: list[ConversationHit]
    total: int


_MARK = re.compile(r"</?mark>")


@tool("search_conversations", scope="search:read", input=SearchConversationsIn, output=SearchConversationsOut,
      writes=False, description="Search what patients and the clinic said in conversations, calls and messages "
      "(by meaning and by words), optionally for one patient. Returns snippets with links; audited as a read.")
async def search_conversations(session: AsyncSession, who: Principal, data: SearchConversationsIn,
                               settings: Settings) -> SearchConversationsOut:
    if data.occurred_from and data.occurred_to and data.occurred_to <= data.occurred_from:
        raise ValidationFailed.field("occurred_to", "must be after occurred_from")
    filters = search.SearchFilters(
        patient_id=data.patient_id, source_types=tuple(data.source_types or ("conversation", "voice_call", "message")),
        channels=tuple(data.channels), occurred_from=data.occurred_from, occurred_to=data.occurred_to)
    hits = await search.search(session, who, data.query, filters, embedder=context.of(session).adapters.embedder(),
                               config=search.SearchConfig.from_settings(settings), limit=data.limit)
    return SearchConversationsOut(total=len(hits), hits=[ConversationHit(
        source_type=h.source_type, source_id=h.source_id, patient_id=h.patient_id, channel=h.channel,
        occurred_at=h.occurred_at, snippet=html.unescape(_MARK.sub("", h.snippet)), score=round(h.score, 6),
        link=h.link) for h in hits])
