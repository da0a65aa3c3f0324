"""Request and response models of the intake API, and the typed clinical records.

The record types and their field names are a published contract (the FHIR mapping reads them):

| type             | fields                                                                          |
| ---------------- | ------------------------------------------------------------------------------- |
| chief_complaint  | text                                                                            |
| symptom          | name, onset_date, onset_text, severity, duration_days, notes                    |
| medication       | name, dose, frequency, route, status, notes                                     |
| allergy          | substance, reaction, severity, category, notes                                  |
| condition        | name, onset_date, status, notes                                                 |
| family_history   | relationship, condition, notes                                                  |
| social_history   | aspect, value, notes                                                            |
| vital            | kind, value, systolic, diastolic, unit, measured_at                             |
| insurance        | payer, plan, member_number, group_number, holder_name, relationship_to_holder   |
| note             | text                                                                            |
| answer           | link_id, value (validated against the session's questionnaire version)          |

Severity is `mild | moderate | severe`; a vital's unit defaults to the kind's UCUM unit.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

Source = Literal["web_form", "whatsapp", "voice", "staff"]
SessionStatus = Literal["open", "submitted", "cancelled"]
LinkStatus = Literal["unlinked", "linked", "needs_review"]
RecordType = Literal[
    "chief_complaint", "symptom", "medication", "allergy", "condition", "family_history", "social_history",
    "vital", "insurance", "note", "answer",
]
Severity = Literal["mild", "moderate", "severe"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Short = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ClientItemId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:@/-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- the typed records -------------------------------------------------------------------------


class ChiefComplaint(_In):
    text: Text


class Symptom(_In):
    name: Short
    onset_date: date | None = None
    onset_text: Short | None = Field(default=None, description='When it started in the patient\'s words ("last week")')
    severity: Severity | None = None
    duration_days: float | None = Field(default=None, ge=0, le=36500)
    notes: Text | None = None


class Medication(_In):
    name: Short
    dose: Short | None = Field(default=None, description='e.g. "500 mg"')
    frequency: Short | None = Field(default=None, description='e.g. "twice a day"')
    route: Short | None = Field(default=None, description='e.g. "oral"')
    status: Literal["active", "stopped", "unknown"] = "active"
    notes: Text | None = None


class Allergy(_In):
    substance: Short
    reaction: Short | None = None
    severity: Severity | None = None
    category: Literal["food", "medication", "environment", "biologic"] | None = None
    notes: Text | None = None


class Condition(_In):
    name: Short
    onset_date: date | None = None
    status: Literal["active", "resolved", "unknown"] = "active"
    notes: Text | None = None


class FamilyHistory(_In):
    relationship: Short = Field(description='e.g. "mother"')
    condition: Short
    notes: Text | None = None


class SocialHistory(_In):
    aspect: Literal["smoking", "alcohol", "drugs", "occupation", "exercise", "diet", "living_situation", "other"]
    value: Text
    notes: Text | None = None


VITAL_UNITS: dict[str, tuple[str, ...]] = {
    "body_weight": ("kg", "[lb_av]"),
    "body_height": ("cm", "[in_i]"),
    "body_temperature": ("Cel", "[degF]"),
    "heart_rate": ("/min",),
    "respiratory_rate": ("/min",),
    "oxygen_saturation": ("%",),
    "blood_pressure": ("mm[Hg]",),
    "blood_glucose": ("mg/dL", "mmol/L"),
}


class Vital(_In):
    kind: Literal["body_weight", "body_height", "body_temperature", "heart_rate", "respiratory_rate",
                  "oxygen_saturation", "blood_pressure", "blood_glucose"]
    value: float | None = Field(default=None, ge=0, le=100000, description="Every kind but blood_pressure")
    systolic: float | None = Field(default=None, ge=0, le=400, description="blood_pressure only")
    diastolic: float | None = Field(default=None, ge=0, le=400, description="blood_pressure only")
    unit: str | None = Field(default=None, description="UCUM; defaults to the kind's first unit (kg, cm, Cel, ...)")
    measured_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _shape(self) -> Vital:
        units = VITAL_UNITS[self.kind]
        if self.unit is None:
            self.unit = units[0]
        elif self.unit not in units:
            raise ValueError(f"unit must be one of {', '.join(units)} for {self.kind}")
        if self.kind == "blood_pressure":
            if self.systolic is None or self.diastolic is None or self.value is not None:
                raise ValueError("blood_pressure takes systolic and diastolic (not value)")
        elif self.value is None or self.systolic is not None or self.diastolic is not None:
            raise ValueError(f"{self.kind} takes value (not systolic/diastolic)")
        return self


class Insurance(_In):
    payer: Short
    plan: Short | None = None
    member_number: Short | None = None
    group_number: Short | None = None
    holder_name: Short | None = None
    relationship_to_holder: Literal["self", "spouse", "child", "other"] | None = None


class Note(_In):
    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=10000)]


AnswerValue = str | int | float | bool | list[str | int | float | bool]


class Answer(_In):
    link_id: Short = Field(description="The questionnaire item answered (`linkId`)")
    value: AnswerValue


RECORD_MODELS: dict[str, type[BaseModel]] = {
    "chief_complaint": ChiefComplaint, "symptom": Symptom, "medication": Medication, "allergy": Allergy,
    "condition": Condition, "family_history": FamilyHistory, "social_history": SocialHistory, "vital": Vital,
    "insurance": Insurance, "note": Note, "answer": Answer,
}

RECORD_EXAMPLE: dict[str, Any] = {
    "type": "medication",
    "data": {"name": "Ibuprofen", "dose": "400 mg", "frequency": "every 8 hours", "status": "active"},
}


class RecordUpsert(_In):
    """One record, by type: `data` holds that type's fields (see the table in the module docs)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RECORD_EXAMPLE]})

    type: RecordType
    data: dict[str, Any]


class RecordItem(RecordUpsert):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"client_item_id": "med-1", **RECORD_EXAMPLE}]})

    client_item_id: ClientItemId = Field(description="The client's own id of the item: the upsert key")


class RecordBatch(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"records": [
        {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Cough for a week"}},
        {"client_item_id": "sym-1", "type": "symptom",
         "data": {"name": "cough", "severity": "moderate", "duration_days": 7}},
    ]}]})

    records: list[RecordItem] = Field(min_length=1, max_length=200)


class RecordRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    session_id: uuid.UUID
    client_item_id: str
    type: RecordType
    data: dict[str, Any]
    revision: int = Field(description="1 on creation, +1 on every upsert that changes it")
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


# --- sessions ----------------------------------------------------------------------------------


class Contact(_In):
    """Who the intake is about, as reported (matched against patients when linking)."""

    given_name: Short | None = None
    family_name: Short | None = None
    birth_date: date | None = None
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40)] | None = None
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=320)] | None = None


SESSION_EXAMPLE: dict[str, Any] = {
    "source": "web_form",
    "questionnaire_key": "new-patient",
    "contact": {"given_name": "Lucía", "family_name": "Martín", "birth_date": "1987-04-12",
                "phone": "+34612345678", "email": "lucia@example.org"},
    "language": "es",
}


class SessionCreate(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SESSION_EXAMPLE]})

    source: Source
    questionnaire_key: Short | None = Field(default=None, description="Answer this questionnaire (its current "
                                            "version, frozen for the session)")
    patient_id: uuid.UUID | None = Field(default=None, description="Link at once (the patient's intake consent "
                                         "must already be recorded)")
    assigned_practitioner_id: uuid.UUID | None = Field(default=None, description="Told when the intake is submitted")
    contact: Contact = Field(default_factory=Contact)
    language: Annotated[str, StringConstraints(max_length=35)] | None = None
    external_ref: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Your reference (unique in the organisation): a second create returns the first")


class SessionUpdate(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"assigned_practitioner_id": "4f6d3c3e-1d7e-4c55-9a39-2d7b7c0c2a10"}]})

    assigned_practitioner_id: uuid.UUID | None = None
    contact: Contact | None = None
    language: Annotated[str, StringConstraints(max_length=35)] | None = None


class ConsentIn(_In):
    granted: bool = Field(description="The patient agreed that this intake is kept in their record")
    method: Literal["verbal", "written", "electronic"] = "electronic"


class LinkRequest(_In):
    """Link by `patient_id`, or leave it out to match the session's contact against the patients."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"consent": {"granted": True, "method": "electronic"}},
        {"patient_id": "0b8e0b8a-6f0e-4d0a-b1a2-6c1b7f9d1e55", "consent": {"granted": True, "method": "verbal"}},
    ]})

    patient_id: uuid.UUID | None = None
    consent: ConsentIn | None = Field(default=None, description="Record the patient's intake consent now; "
                                      "without it, a consent already recorded is required")


class CandidateRead(BaseModel):
    patient_id: uuid.UUID
    score: float
    reasons: list[str]


class SummaryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    session_id: uuid.UUID
    content: dict[str, Any] = Field(description="Structured: chief_complaint, symptoms, medications, allergies, "
                                    "conditions, history, vitals, insurance, red_flags, questions")
    text: str
    machine_generated: bool = Field(description="True: written by a model or the offline summariser")
    generator: str = Field(description='"offline" or the model name')
    edited: bool = Field(description="Changed by staff after generation (never overwritten by a regeneration)")
    edited_by: uuid.UUID | None
    generated_at: datetime
    updated_at: datetime


class SummaryEdit(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Cough for a week, no fever. Takes ibuprofen 400 mg. Penicillin allergy (rash)."}]})

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20000)]
    content: dict[str, Any] | None = None


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    source: Source
    status: SessionStatus
    link_status: LinkStatus
    patient_id: uuid.UUID | None
    assigned_practitioner_id: uuid.UUID | None
    questionnaire_id: uuid.UUID | None
    questionnaire_version: int | None
    contact: dict[str, Any]
    language: str | None
    external_ref: str | None
    communication_id: uuid.UUID | None
    appointment_id: uuid.UUID | None
    consent_recorded_at: datetime | None
    match_candidates: list[dict[str, Any]] = Field(description="For staff review: the patients that matched")
    version: int = Field(description="Also the ETag; send it in If-Match to write safely")
    created_at: datetime
    updated_at: datetime
    submitted_at: datetime | None
    summary_status: Literal["none", "pending", "ready", "failed"]


class SessionDetail(SessionRead):
    records: list[RecordRead]


class SubmitResult(SessionRead):
    ticket_id: uuid.UUID | None = Field(default=None, description="The ticket telling the practitioner")


# --- questionnaires ----------------------------------------------------------------------------

ItemType = Literal["group", "display", "boolean", "decimal", "integer", "date", "dateTime", "string", "text",
                   "choice", "open-choice"]


class AnswerOption(_In):
    value_coding: dict[str, Annotated[str, StringConstraints(max_length=500)]] | None = Field(
        default=None, alias="valueCoding")
    value_string: str | None = Field(default=None, alias="valueString", max_length=500)
    value_integer: int | None = Field(default=None, alias="valueInteger")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class QuestionnaireItem(_In):
    """A FHIR Questionnaire item (the subset forms use)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    link_id: Short = Field(alias="linkId")
    text: Annotated[str, StringConstraints(max_length=2000)] | None = None
    type: ItemType
    required: bool = False
    repeats: bool = False
    answer_option: list[AnswerOption] = Field(default_factory=list, alias="answerOption", max_length=200)
    item: list[QuestionnaireItem] = Field(default_factory=list, max_length=200)


QUESTIONNAIRE_EXAMPLE: dict[str, Any] = {
    "key": "new-patient",
    "title": "New patient intake",
    "item": [
        {"linkId": "reason", "text": "What brings you in?", "type": "text", "required": True},
        {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True},
        {"linkId": "pain", "text": "Pain today (0-10)", "type": "integer"},
        {"linkId": "visit", "text": "Visit type", "type": "choice",
         "answerOption": [{"valueString": "in person"}, {"valueString": "video"}]},
    ],
}


class QuestionnairePublish(_In):
    """Publish a questionnaire: a new key starts at version 1, a known key gets its next version."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True,
                              json_schema_extra={"examples": [QUESTIONNAIRE_EXAMPLE]})

    key: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")]
    title: Short
    description: Annotated[str, StringConstraints(max_length=2000)] = ""
    item: list[QuestionnaireItem] = Field(min_length=1, max_length=200)


class QuestionnaireRead(BaseModel):
    id: uuid.UUID
    key: str
    title: str
    description: str
    version: int = Field(description="The version new sessions use")
    versions: list[int]
    retired: bool
    resource: dict[str, Any] = Field(description="The current version as a FHIR R4 Questionnaire")


# --- statistics --------------------------------------------------------------------------------


class Statistics(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "from_date": "2026-11-01", "to_date": "2026-11-30", "total": 40,
        "by_status": {"open": 6, "submitted": 31, "cancelled": 3},
        "by_source": {"web_form": 22, "whatsapp": 5, "voice": 10, "staff": 3},
        "completion_rate": 0.775, "median_minutes_to_submit": 11.5,
        "by_questionnaire": [{"questionnaire_id": None, "key": "new-patient", "total": 22, "submitted": 18,
                              "completion_rate": 0.818, "median_minutes_to_submit": 9.0}],
        "interval": "week",
        "by_period": [{"period_start": "2026-11-23", "total": 12, "submitted": 10, "completion_rate": 0.909,
                       "median_minutes_to_submit": 10.5}],
    }]})

    from_date: date
    to_date: date
    total: int
    by_status: dict[str, int]
    by_source: dict[str, int]
    completion_rate: float | None = Field(description="submitted / (all but cancelled); null with none")
    median_minutes_to_submit: float | None
    by_questionnaire: list[dict[str, Any]]
    interval: Literal["day", "week", "month"]
    by_period: list[dict[str, Any]] = Field(description="The same per day, week (from Monday) or month (UTC), "
                                            "periods with sessions only")
