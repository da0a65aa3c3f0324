"""Request and response models of the scheduling API."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from prm.core import clock
from prm.core.fields import MAX_INT32, LocalTime, Name, reject_null

Mode = Literal["in_person", "video"]
Keyword = Annotated[str, Field(min_length=1, max_length=100)]
Status = Literal["booked", "confirmed", "checked_in", "completed", "no_show", "cancelled"]


def _zone(value: str) -> str:
    if not clock.is_time_zone(value):
        raise ValueError(f"unknown IANA time zone {value!r}")
    return value


class _Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# --- practitioners ------------------------------------------------------------------------------


class PractitionerCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    title: str = Field("", max_length=100)
    email: str | None = Field(None, max_length=320)
    user_id: uuid.UUID | None = Field(None, description="Link to a staff user of the organisation")
    timezone: str = Field("UTC", max_length=64, description="IANA time zone, e.g. Europe/Madrid")
    is_active: bool = True

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class PractitionerUpdate(BaseModel):
    name: Name | None = Field(None, min_length=1, max_length=200)
    title: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=320)
    user_id: uuid.UUID | None = None
    timezone: str | None = Field(None, max_length=64, description="IANA time zone, e.g. Europe/Madrid")
    is_active: bool | None = None

    _not_null = field_validator("name", "title", "timezone", "is_active", mode="before")(reject_null)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)


class PractitionerRead(_Read):
    id: uuid.UUID
    name: str
    title: str
    email: str | None
    user_id: uuid.UUID | None
    timezone: str
    is_active: bool


# --- locations ----------------------------------------------------------------------------------


class LocationCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    address: str = ""
    timezone: str = Field(max_length=64, description="IANA time zone the location's availability is written in")
    is_virtual: bool = False
    is_active: bool = True

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return _zone(v)


class LocationUpdate(BaseModel):
    name: Name | None = Field(None, min_length=1, max_length=200)
    address: str | None = None
    timezone: str | None = Field(None, max_length=64, description="IANA time zone, e.g. Europe/Madrid")
    is_virtual: bool | None = None
    is_active: bool | None = None

    _not_null = field_validator("name", "address", "timezone", "is_virtual", "is_active", mode="before")(
        reject_null
    )

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _zone(v)


class LocationRead(_Read):
    id: uuid.UUID
    name: str
    address: str
    timezone: str
    is_virtual: bool
    is_active: bool


# --- services -----------------------------------------------------------------------------------


class ServiceCreate(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    description: str = ""
    duration_minutes: int = Field(gt=0, le=24 * 60)
    buffer_before_minutes: int = Field(0, ge=0, le=240)
    buffer_after_minutes: int = Field(0, ge=0, le=240)
    mode: Mode = "in_person"
    min_notice_minutes: int = Field(
        60, ge=0, le=MAX_INT32, description="How long before its start a slot stops being offered"
    )
    horizon_days: int = Field(90, gt=0, le=730, description="How far ahead slots are offered")
    slot_step_minutes: int = Field(15, gt=0, le=24 * 60, description="Spacing of offered start times")
    keywords: list[Keyword] = Field(
        default_factory=list, description="Aliases a chat bot may match, e.g. ['cleaning', 'limpieza']"
    )
    practitioner_ids: list[uuid.UUID] = Field(default_factory=list, description="Who offers this service")
    is_active: bool = True


class ServiceUpdate(BaseModel):
    name: Name | None = Field(None, min_length=1, max_length=200)
    description: str | None = None
    duration_minutes: int | None = Field(None, gt=0, le=24 * 60)
    buffer_before_minutes: int | None = Field(None, ge=0, le=240)
    buffer_after_minutes: int | None = Field(None, ge=0, le=240)
    mode: Mode | None = None
    min_notice_minutes: int | None = Field(None, ge=0, le=MAX_INT32)
    horizon_days: int | None = Field(None, gt=0, le=730)
    slot_step_minutes: int | None = Field(None, gt=0, le=24 * 60)
    keywords: list[Keyword] | None = None
    practitioner_ids: list[uuid.UUID] | None = None
    is_active: bool | None = None

    _not_null = field_validator(
        "name", "description", "duration_minutes", "buffer_before_minutes", "buffer_after_minutes", "mode",
        "min_notice_minutes", "horizon_days", "slot_step_minutes", "keywords", "practitioner_ids", "is_active",
        mode="before",
    )(reject_null)


class ServiceRead(_Read):
    id: uuid.UUID
    name: str
    description: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    mode: str
    min_notice_minutes: int
    horizon_days: int
    slot_step_minutes: int
    keywords: list[str]
    practitioner_ids: list[uuid.UUID]
    is_active: bool


# --- availability -------------------------------------------------------------------------------


class RuleCreate(BaseModel):
    location_id: uuid.UUID
    weekday: int = Field(ge=0, le=6, description="0 = Monday ... 6 = Sunday")
    start_time: LocalTime = Field(description="Local wall-clock time at the location")
    end_time: LocalTime
    valid_from: date | None = None
    valid_until: date | None = None

    @field_validator("end_time")
    @classmethod
    def _ends_after_start(cls, value: Any, info: ValidationInfo) -> Any:
        start = info.data.get("start_time")
        if start is not None and start >= value:
            raise ValueError("end_time must be after start_time")
        return value

    @field_validator("valid_until")
    @classmethod
    def _valid_in_order(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("valid_from")
        if value is not None and start is not None and start > value:
            raise ValueError("valid_until must not be before valid_from")
        return value


class RuleRead(_Read):
    id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    weekday: int
    start_time: LocalTime
    end_time: LocalTime
    valid_from: date | None
    valid_until: date | None


class ExceptionCreate(BaseModel):
    kind: Literal["time_off", "extra_hours"]
    location_id: uuid.UUID | None = Field(
        None, description="Required for extra hours; time off without one applies at every location"
    )
    start_at: datetime = Field(description="With an offset; without one it is read in the location's zone")
    end_at: datetime
    reason: str = Field("", max_length=200)


class ExceptionRead(_Read):
    id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID | None
    kind: str
    start_at: datetime
    end_at: datetime
    reason: str


# --- slots and appointments ---------------------------------------------------------------------


class SlotRead(BaseModel):
    start_at: datetime = Field(description="UTC")
    end_at: datetime
    local_start: datetime = Field(description="The same instant in the location's zone (ISO with offset)")
    local_end: datetime
    timezone: str
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    service_id: uuid.UUID


class ScheduleStartsRead(BaseModel):
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    timezone: str = Field(description="The location's IANA time zone: the days and times below are local there")
    days: dict[date, list[time]] = Field(
        description="Per local day, the start times in order, each the local wall-clock time with its UTC offset "
        '(`"09:00:00+01:00"`): `day + "T" + time` is the ISO 8601 instant, and a time repeated on the day '
        "clocks go back is told apart by its offset. Days without a start are left out.",
        examples=[{"2026-03-24": ["09:00:00+01:00", "09:15:00+01:00"]}],
    )


class SlotsCompactRead(BaseModel):
    """`GET /slots?shape=compact`: the same slots as the full list, by practitioner, location and local day."""

    service_id: uuid.UUID
    duration_minutes: int = Field(description="Every slot ends this long (in real time) after its start")
    start_date: date
    end_date: date
    schedules: list[ScheduleStartsRead] = Field(
        description="One entry per practitioner and location offering the service (by ids), even without starts"
    )


class AppointmentCreate(BaseModel):
    patient_id: uuid.UUID
    service_id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID | None = Field(None, description="Defaults to where the practitioner works then")
    start_at: AwareDatetime
    notes: str = Field("", max_length=4000)
    source: str = Field("api", max_length=32, description="Channel that booked it: api, whatsapp, phone ...")


class AppointmentUpdate(BaseModel):
    notes: str | None = Field(None, max_length=4000)

    _not_null = field_validator("notes", mode="before")(reject_null)


class CancelBody(BaseModel):
    reason: str = Field(min_length=1, max_length=1000)


class RescheduleBody(BaseModel):
    start_at: AwareDatetime
    practitioner_id: uuid.UUID | None = Field(None, description="Move to another practitioner as well")
    location_id: uuid.UUID | None = None
    reason: str | None = Field(None, max_length=1000)


class AppointmentRead(_Read):
    id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    service_id: uuid.UUID
    location_id: uuid.UUID
    start_at: datetime
    end_at: datetime
    status: Status
    mode: str
    notes: str
    source: str
    sequence: int
    confirmed_at: datetime | None
    checked_in_at: datetime | None
    completed_at: datetime | None
    no_show_at: datetime | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    allowed_actions: list[str] = Field(default_factory=list)


class ChangeRead(_Read):
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    old_start_at: datetime | None
    old_end_at: datetime | None
    new_start_at: datetime | None
    new_end_at: datetime | None
    actor: str
    reason: str | None


class ReminderRead(_Read):
    id: uuid.UUID
    offset_minutes: int = Field(description="Nominal minutes (1d = 1440); `offset` says how it was counted")
    offset: str | None = Field(None, description="1d (local calendar days), 2h, 30m (absolute)")
    due_at: datetime
    status: str
    fired_at: datetime | None


class AppointmentDetail(AppointmentRead):
    history: list[ChangeRead]
    reminders: list[ReminderRead]


class AgendaEntry(BaseModel):
    appointment: AppointmentRead
    local_start: datetime
    local_end: datetime
    timezone: str
    service_name: str
    location_name: str


class Agenda(BaseModel):
    practitioner_id: uuid.UUID
    start_date: date
    end_date: date
    timezone: str
    entries: list[AgendaEntry]

