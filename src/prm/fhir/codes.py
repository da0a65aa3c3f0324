"""FHIR R4 code values we emit and accept, checked by us (fhir.resources validates structure,
cardinality and primitive formats, but not whether a `code` belongs to its required value set).

Pure data and pure functions: the status mappings both ways and `check(resource)`, which walks a
resource (a dict, as sent on the wire) and raises `InvalidCode` naming the first element whose code
is outside its required binding.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# --- required bindings of the elements we emit (R4 / R4B value sets) ----------------------------

ADMINISTRATIVE_GENDER = frozenset({"male", "female", "other", "unknown"})
CONTACT_POINT_SYSTEM = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})
CONTACT_POINT_USE = frozenset({"home", "work", "temp", "old", "mobile"})
NAME_USE = frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"})
ADDRESS_USE = frozenset({"home", "work", "temp", "old", "billing"})
IDENTIFIER_USE = frozenset({"usual", "official", "temp", "secondary", "old"})
LINK_TYPE = frozenset({"replaced-by", "replaces", "refer", "seealso"})
APPOINTMENT_STATUS = frozenset({"proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                                "entered-in-error", "checked-in", "waitlist"})
PARTICIPANT_STATUS = frozenset({"accepted", "declined", "tentative", "needs-action"})
PARTICIPANT_REQUIRED = frozenset({"required", "optional", "information-only"})
EVENT_STATUS = frozenset({"preparation", "in-progress", "not-done", "on-hold", "stopped", "completed",
                          "entered-in-error", "unknown"})
REQUEST_PRIORITY = frozenset({"routine", "urgent", "asap", "stat"})
LOCATION_STATUS = frozenset({"active", "suspended", "inactive"})
LOCATION_MODE = frozenset({"instance", "kind"})
SLOT_STATUS = frozenset({"busy", "free", "busy-unavailable", "busy-tentative", "entered-in-error"})
DAYS_OF_WEEK = frozenset({"mon", "tue", "wed", "thu", "fri", "sat", "sun"})
BUNDLE_TYPE = frozenset({"document", "message", "transaction", "transaction-response", "batch",
                         "batch-response", "history", "searchset", "collection"})
SEARCH_ENTRY_MODE = frozenset({"match", "include", "outcome"})
HTTP_VERB = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"})
ISSUE_SEVERITY = frozenset({"fatal", "error", "warning", "information"})
ISSUE_TYPE = frozenset({
    "invalid", "structure", "required", "value", "invariant", "security", "login", "unknown", "expired",
    "forbidden", "suppressed", "processing", "not-supported", "duplicate", "multiple-matches", "not-found",
    "deleted", "too-long", "code-invalid", "extension", "too-costly", "business-rule", "conflict",
    "transient", "lock-error", "no-store", "exception", "timeout", "incomplete", "throttled", "informational",
})
PUBLICATION_STATUS = frozenset({"draft", "active", "retired", "unknown"})
CAPABILITY_KIND = frozenset({"instance", "capability", "requirements"})
RESTFUL_MODE = frozenset({"client", "server"})
TYPE_INTERACTION = frozenset({"read", "vread", "update", "patch", "delete", "history-instance",
                              "history-type", "create", "search-type"})
SYSTEM_INTERACTION = frozenset({"transaction", "batch", "search-system", "history-system"})
SEARCH_PARAM_TYPE = frozenset({"number", "date", "string", "token", "reference", "composite", "quantity",
                               "uri", "special"})
VERSIONING_POLICY = frozenset({"no-version", "versioned", "versioned-update"})
FHIR_VERSION = frozenset({"4.0.1", "4.3.0"})
QUESTIONNAIRE_ITEM_TYPE = frozenset({"group", "display", "boolean", "decimal", "integer", "date", "dateTime",
                                     "time", "string", "text", "url", "choice", "open-choice", "attachment",
                                     "reference", "quantity", "question"})
QUESTIONNAIRE_RESPONSE_STATUS = frozenset({"in-progress", "completed", "amended", "entered-in-error", "stopped"})
ALLERGY_TYPE = frozenset({"allergy", "intolerance"})
ALLERGY_CATEGORY = frozenset({"food", "medication", "environment", "biologic"})
ALLERGY_CRITICALITY = frozenset({"low", "high", "unable-to-assess"})
REACTION_SEVERITY = frozenset({"mild", "moderate", "severe"})
MEDICATION_STATEMENT_STATUS = frozenset({"active", "completed", "entered-in-error", "intended", "stopped",
                                         "on-hold", "unknown", "not-taken"})
OBSERVATION_STATUS = frozenset({"registered", "preliminary", "final", "amended", "corrected", "cancelled",
                                "entered-in-error", "unknown"})
DOCUMENT_REFERENCE_STATUS = frozenset({"current", "superseded", "entered-in-error"})
COMPOSITION_STATUS = frozenset({"preliminary", "final", "amended", "entered-in-error"})
NARRATIVE_STATUS = frozenset({"generated", "extensions", "additional", "empty"})

# Code systems whose codes we also check (the CodeableConcepts we fill from our own tables).
CLINICAL_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_CLINICAL = frozenset({"active", "recurrence", "relapse", "inactive", "remission", "resolved"})
ALLERGY_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_CLINICAL = frozenset({"active", "inactive", "resolved"})
PARTICIPATION_MODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode"
PARTICIPATION_MODE = frozenset({"ELECTRONIC", "PHYSICAL", "REMOTE", "VERBAL", "DICTATE", "FACE", "PHONE",
                                "VIDEOCONF", "WRITTEN", "FAXWRIT", "HANDWRIT", "MAILWRIT", "ONLINEWRIT",
                                "EMAILWRIT", "TYPEWRIT"})
COMMUNICATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/communication-category"
COMMUNICATION_CATEGORY = frozenset({"alert", "notification", "reminder", "instruction"})
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_CATEGORY = frozenset({"social-history", "vital-signs", "imaging", "laboratory", "procedure",
                                  "survey", "exam", "therapy", "activity"})
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CATEGORY = frozenset({"problem-list-item", "encounter-diagnosis"})
CONDITION_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_VERIFICATION = frozenset({"unconfirmed", "provisional", "differential", "confirmed", "refuted",
                                    "entered-in-error"})
ALLERGY_VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ALLERGY_VERIFICATION = frozenset({"unconfirmed", "confirmed", "refuted", "entered-in-error"})
FAMILY_HISTORY_STATUS = frozenset({"partial", "completed", "entered-in-error", "health-unknown"})
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
PARTICIPANT_TYPE = frozenset({"ATND", "PPRF", "SPRF", "PART", "ADM", "CON", "DIS", "REF", "TRANS"})

CODE_SYSTEMS: dict[str, frozenset[str]] = {
    CLINICAL_STATUS_SYSTEM: CONDITION_CLINICAL,
    ALLERGY_CLINICAL_SYSTEM: ALLERGY_CLINICAL,
    PARTICIPATION_MODE_SYSTEM: PARTICIPATION_MODE,
    COMMUNICATION_CATEGORY_SYSTEM: COMMUNICATION_CATEGORY,
    OBSERVATION_CATEGORY_SYSTEM: OBSERVATION_CATEGORY,
    CONDITION_CATEGORY_SYSTEM: CONDITION_CATEGORY,
    PARTICIPANT_TYPE_SYSTEM: PARTICIPANT_TYPE,
    CONDITION_VERIFICATION_SYSTEM: CONDITION_VERIFICATION,
    ALLERGY_VERIFICATION_SYSTEM: ALLERGY_VERIFICATION,
}

# (resource type or "*", element path) -> value set. A path names nested keys; lists are walked.
BINDINGS: dict[tuple[str, str], frozenset[str]] = {
    ("Patient", "gender"): ADMINISTRATIVE_GENDER,
    ("Practitioner", "gender"): ADMINISTRATIVE_GENDER,
    ("*", "telecom.system"): CONTACT_POINT_SYSTEM,
    ("*", "telecom.use"): CONTACT_POINT_USE,
    ("*", "name.use"): NAME_USE,
    ("*", "address.use"): ADDRESS_USE,
    ("*", "identifier.use"): IDENTIFIER_USE,
    ("Patient", "link.type"): LINK_TYPE,
    ("Appointment", "status"): APPOINTMENT_STATUS,
    ("Appointment", "participant.status"): PARTICIPANT_STATUS,
    ("Appointment", "participant.required"): PARTICIPANT_REQUIRED,
    ("Communication", "status"): EVENT_STATUS,
    ("Communication", "priority"): REQUEST_PRIORITY,
    ("Location", "status"): LOCATION_STATUS,
    ("Location", "mode"): LOCATION_MODE,
    ("Location", "hoursOfOperation.daysOfWeek"): DAYS_OF_WEEK,
    ("HealthcareService", "availableTime.daysOfWeek"): DAYS_OF_WEEK,
    ("Slot", "status"): SLOT_STATUS,
    ("Bundle", "type"): BUNDLE_TYPE,
    ("Bundle", "entry.search.mode"): SEARCH_ENTRY_MODE,
    ("Bundle", "entry.request.method"): HTTP_VERB,
    ("OperationOutcome", "issue.severity"): ISSUE_SEVERITY,
    ("OperationOutcome", "issue.code"): ISSUE_TYPE,
    ("CapabilityStatement", "status"): PUBLICATION_STATUS,
    ("CapabilityStatement", "kind"): CAPABILITY_KIND,
    ("CapabilityStatement", "fhirVersion"): FHIR_VERSION,
    ("CapabilityStatement", "rest.mode"): RESTFUL_MODE,
    ("CapabilityStatement", "rest.resource.interaction.code"): TYPE_INTERACTION,
    ("CapabilityStatement", "rest.resource.searchParam.type"): SEARCH_PARAM_TYPE,
    ("CapabilityStatement", "rest.resource.versioning"): VERSIONING_POLICY,
    ("CapabilityStatement", "rest.interaction.code"): SYSTEM_INTERACTION,
    ("Questionnaire", "status"): PUBLICATION_STATUS,
    ("Questionnaire", "item.type"): QUESTIONNAIRE_ITEM_TYPE,
    ("Questionnaire", "item.item.type"): QUESTIONNAIRE_ITEM_TYPE,
    ("QuestionnaireResponse", "status"): QUESTIONNAIRE_RESPONSE_STATUS,
    ("AllergyIntolerance", "type"): ALLERGY_TYPE,
    ("AllergyIntolerance", "category"): ALLERGY_CATEGORY,
    ("AllergyIntolerance", "criticality"): ALLERGY_CRITICALITY,
    ("AllergyIntolerance", "reaction.severity"): REACTION_SEVERITY,
    ("MedicationStatement", "status"): MEDICATION_STATEMENT_STATUS,
    ("Observation", "status"): OBSERVATION_STATUS,
    ("DocumentReference", "status"): DOCUMENT_REFERENCE_STATUS,
    ("DocumentReference", "docStatus"): COMPOSITION_STATUS,
    ("FamilyMemberHistory", "status"): FAMILY_HISTORY_STATUS,
    ("*", "text.status"): NARRATIVE_STATUS,
}


class InvalidCode(ValueError):
    def __init__(self, path: str, value: object) -> None:
        super().__init__(f"{path}: {value!r} is not a code of the value set bound to this element")
        self.path = path
        self.value = value


def _walk(node: Any, keys: list[str], path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, keys, f"{path}[{i}]")
        return
    if not keys:
        yield path, node
        return
    if isinstance(node, dict) and keys[0] in node:
        yield from _walk(node[keys[0]], keys[1:], f"{path}.{keys[0]}" if path else keys[0])


def _codings(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Coding (a dict with `system` and `code`) anywhere under `node`."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and "code" in node:
            yield path, node
        for key, value in node.items():
            if key in ("contained", "resource"):  # checked as resources of their own
                continue
            yield from _codings(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _codings(item, f"{path}[{i}]")


def check(resource: dict[str, Any]) -> None:
    """Raise `InvalidCode` for the first coded element outside its binding (bundle entries and
    contained resources included)."""
    rtype = resource.get("resourceType", "")
    for (owner, element), allowed in BINDINGS.items():
        if owner not in ("*", rtype):
            continue
        for path, value in _walk(resource, element.split("."), ""):
            if value is not None and value not in allowed:
                raise InvalidCode(f"{rtype}.{path}", value)
    for path, coding in _codings(resource, ""):
        allowed_codes = CODE_SYSTEMS.get(coding["system"])
        if allowed_codes is not None and coding["code"] not in allowed_codes:
            raise InvalidCode(f"{rtype}.{path}.code", coding["code"])
    for inner in resource.get("contained") or []:
        check(inner)
    for entry in resource.get("entry") or []:
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            check(entry["resource"])


# --- status mappings, both ways -----------------------------------------------------------------

# our appointment status -> FHIR Appointment.status
APPOINTMENT_TO_FHIR: dict[str, str] = {
    "booked": "booked",
    "confirmed": "booked",
    "checked_in": "checked-in",
    "completed": "fulfilled",
    "no_show": "noshow",
    "cancelled": "cancelled",
}
# FHIR Appointment.status -> ours (the statuses a search may name; proposed/pending/waitlist have no
# counterpart: we only store appointments that hold a time)
APPOINTMENT_FROM_FHIR: dict[str, tuple[str, ...]] = {
    "booked": ("booked", "confirmed"),
    "arrived": ("checked_in",),
    "checked-in": ("checked_in",),
    "fulfilled": ("completed",),
    "noshow": ("no_show",),
    "cancelled": ("cancelled",),
    "entered-in-error": (),
    "proposed": (),
    "pending": (),
    "waitlist": (),
}
# the patient participant's status: only a confirmed (or later) appointment is `accepted`
PATIENT_PARTICIPATION: dict[str, str] = {
    "booked": "needs-action",
    "confirmed": "accepted",
    "checked_in": "accepted",
    "completed": "accepted",
    "no_show": "accepted",
    "cancelled": "declined",
}

COMMUNICATION_TO_FHIR: dict[str, str] = {
    "queued": "preparation",
    "sending": "in-progress",
    "sent": "completed",
    "delivered": "completed",
    "read": "completed",
    "failed": "not-done",
    "undelivered": "not-done",
    "cancelled": "stopped",
    "received": "completed",
}
COMMUNICATION_FROM_FHIR: dict[str, tuple[str, ...]] = {}
for _ours, _theirs in COMMUNICATION_TO_FHIR.items():
    COMMUNICATION_FROM_FHIR.setdefault(_theirs, ())
    COMMUNICATION_FROM_FHIR[_theirs] += (_ours,)
for _code in EVENT_STATUS - set(COMMUNICATION_FROM_FHIR):
    COMMUNICATION_FROM_FHIR[_code] = ()

CHANNEL_MEDIUM: dict[str, str] = {"sms": "ONLINEWRIT", "whatsapp": "ONLINEWRIT", "email": "EMAILWRIT",
                                  "voice": "PHONE"}
PURPOSE_CATEGORY: dict[str, str] = {"care": "notification", "reminders": "reminder", "marketing": "notification"}


def appointment_status_to_fhir(status: str) -> str:
    try:
        return APPOINTMENT_TO_FHIR[status]
    except KeyError:
        raise InvalidCode("Appointment.status", status) from None


def appointment_statuses_from_fhir(code: str) -> tuple[str, ...]:
    """Our statuses a FHIR Appointment.status stands for; InvalidCode for a code outside the set."""
    if code not in APPOINTMENT_STATUS:
        raise InvalidCode("Appointment.status", code)
    return APPOINTMENT_FROM_FHIR[code]


def communication_status_to_fhir(status: str) -> str:
    try:
        return COMMUNICATION_TO_FHIR[status]
    except KeyError:
        raise InvalidCode("Communication.status", status) from None


def communication_statuses_from_fhir(code: str) -> tuple[str, ...]:
    if code not in EVENT_STATUS:
        raise InvalidCode("Communication.status", code)
    return COMMUNICATION_FROM_FHIR[code]
