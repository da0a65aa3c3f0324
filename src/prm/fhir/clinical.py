"""Intake as FHIR: the questionnaire, the patient's answers, the typed records and the summary. Pure.

| intake | FHIR |
| --- | --- |
| questionnaire version | `Questionnaire` (id = questionnaire id, `version`, canonical `url`) |
| session answers (`answer` records) | `QuestionnaireResponse` (id = session id; `completed` once submitted) |
| `condition`, `symptom` | `Condition` (problem-list-item, verification `unconfirmed`: patient-reported) |
| `allergy` | `AllergyIntolerance` (verification `unconfirmed`) |
| `medication` | `MedicationStatement` (active / stopped / unknown) |
| `vital` | `Observation` vital-signs with its LOINC code and UCUM quantity (blood pressure: components) |
| `social_history` | `Observation` social-history (smoking: LOINC 72166-2) |
| `chief_complaint` | `Observation` LOINC 8661-1 (chief complaint, reported) |
| `family_history` | `FamilyMemberHistory` |
| summary | `DocumentReference` (LOINC 34133-9, text as a base64 attachment; `preliminary` until reviewed) |

`insurance` and free `note` records are not sent as resources of their own: the notes are in the
summary document; coverage needs payer organisations the EHR must already know (see docs/fhir.md).

Every function takes plain values (the intake rows' fields, a record's `data` dict) and returns a
resource through `mapping.validated`.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from prm.fhir import codes, mapping

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
CONDITION_VERIFICATION_SYSTEM = codes.CONDITION_VERIFICATION_SYSTEM
ALLERGY_VERIFICATION_SYSTEM = codes.ALLERGY_VERIFICATION_SYSTEM
QUESTIONNAIRE_URL_BASE = "https://prm.dev/fhir/Questionnaire"

# intake vital kind -> (LOINC code, display)
VITALS: dict[str, tuple[str, str]] = {
    "body_weight": ("29463-7", "Body weight"),
    "body_height": ("8302-2", "Body height"),
    "body_temperature": ("8310-5", "Body temperature"),
    "heart_rate": ("8867-4", "Heart rate"),
    "respiratory_rate": ("9279-1", "Respiratory rate"),
    "oxygen_saturation": ("2708-6", "Oxygen saturation in Arterial blood"),
    "blood_pressure": ("85354-9", "Blood pressure panel with all children optional"),
    "blood_glucose": ("2339-0", "Glucose [Mass/volume] in Blood"),
}
SYSTOLIC = ("8480-6", "Systolic blood pressure")
DIASTOLIC = ("8462-4", "Diastolic blood pressure")
SMOKING = ("72166-2", "Tobacco smoking status")
CHIEF_COMPLAINT = ("8661-1", "Chief complaint - Reported")
SUMMARY_DOC = ("34133-9", "Summary of episode note")

RECORD_RESOURCE = {
    "condition": "Condition",
    "symptom": "Condition",
    "allergy": "AllergyIntolerance",
    "medication": "MedicationStatement",
    "vital": "Observation",
    "social_history": "Observation",
    "chief_complaint": "Observation",
    "family_history": "FamilyMemberHistory",
}
NOT_MAPPED = {"insurance": "coverage needs the payer as an Organization the EHR knows",
              "note": "free notes travel in the summary document", "answer": "answers form the QuestionnaireResponse"}


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, **({"display": display} if display else {})}]}


def _concept(text: Any) -> dict[str, Any]:
    return {"text": _text(text) or "Not stated"}


def _notes(*values: Any) -> list[dict[str, str]] | None:
    notes = [{"text": t} for t in (_text(v) for v in values) if t]
    return notes or None


def _drop(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


def _base(resource_type: str, record_id: uuid.UUID, updated_at: datetime | None) -> dict[str, Any]:
    ident = mapping.identifier(resource_type, record_id)
    return _drop({"resourceType": resource_type, "id": str(record_id),
                  "meta": {"lastUpdated": updated_at.isoformat()} if updated_at else None,
                  # QuestionnaireResponse.identifier is 0..1, the others 0..*
                  "identifier": ident if resource_type == "QuestionnaireResponse" else [ident]})


# --- questionnaire and answers ----------------------------------------------------------------------


def questionnaire_url(key: str) -> str:
    return f"{QUESTIONNAIRE_URL_BASE}/{key}"


def questionnaire(*, questionnaire_id: uuid.UUID, key: str, title: str, description: str, version: int,
                  items: list[dict[str, Any]], status: str = "active", updated_at: datetime | None = None
                  ) -> dict[str, Any]:
    return mapping.validated(_drop({
        **_base("Questionnaire", questionnaire_id, updated_at),
        "url": questionnaire_url(key),
        "version": str(version),
        "name": "".join(ch if ch.isalnum() else "_" for ch in key) or None,
        "title": _text(title),
        "status": status,
        "description": _text(description),
        "item": items,
    }))


def _walk(items: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        found[item["linkId"]] = item
        found.update(_walk(item.get("item") or []))
    return found


def _answer(item_type: str | None, value: Any, options: list[dict[str, Any]]) -> dict[str, Any]:
    if isinstance(value, bool) or item_type == "boolean":
        return {"valueBoolean": bool(value)}
    if item_type == "integer" or (item_type is None and isinstance(value, int)):
        return {"valueInteger": int(value)}
    if item_type == "decimal" or (item_type is None and isinstance(value, float)):
        return {"valueDecimal": float(value)}
    if item_type == "date":
        return {"valueDate": str(value)}
    if item_type == "dateTime":
        return {"valueDateTime": str(value)}
    if item_type in ("choice", "open-choice"):
        for option in options:
            coding = option.get("valueCoding")
            if coding and coding.get("code") == value:
                return {"valueCoding": coding}
    return {"valueString": str(value)}


def questionnaire_response(*, session_id: uuid.UUID, status: str, patient_id: uuid.UUID | None,
                           questionnaire_key: str | None, questionnaire_version: int | None,
                           items: Sequence[dict[str, Any]], answers: Sequence[dict[str, Any]],
                           authored_at: datetime | None, updated_at: datetime | None = None) -> dict[str, Any]:
    """`answers` are the `answer` records' data (`link_id`, `value`: a list for a repeating item)."""
    by_link = _walk(items)
    response_items = []
    for answer in answers:
        item = by_link.get(str(answer.get("link_id")), {})
        values = answer.get("value")
        values = values if isinstance(values, list) else [values]
        response_items.append(_drop({
            "linkId": str(answer.get("link_id")),
            "text": _text(item.get("text")),
            "answer": [_answer(item.get("type"), v, item.get("answerOption") or []) for v in values
                       if v is not None and v != ""] or None,
        }))
    canonical = (f"{questionnaire_url(questionnaire_key)}|{questionnaire_version}"
                 if questionnaire_key and questionnaire_version else None)
    return mapping.validated(_drop({
        **_base("QuestionnaireResponse", session_id, updated_at),
        "questionnaire": canonical,
        "status": "completed" if status == "submitted" else ("stopped" if status == "cancelled" else "in-progress"),
        "subject": {"reference": f"Patient/{patient_id}"} if patient_id else None,
        "authored": authored_at.isoformat() if authored_at else None,
        "source": {"reference": f"Patient/{patient_id}"} if patient_id else None,
        "item": response_items or None,
    }))


# --- records ----------------------------------------------------------------------------------------


def _date_or_text(data: dict[str, Any], date_key: str, text_key: str | None = None) -> dict[str, Any]:
    if data.get(date_key):
        return {"onsetDateTime": str(data[date_key])}
    if text_key and _text(data.get(text_key)):
        return {"onsetString": _text(data[text_key])}
    return {}


def record(*, record_id: uuid.UUID, record_type: str, data: dict[str, Any], patient_id: uuid.UUID,
           recorded_at: datetime, updated_at: datetime | None = None) -> dict[str, Any] | None:
    """An intake record as its resource; None for the types not sent as resources (`NOT_MAPPED`)."""
    resource_type = RECORD_RESOURCE.get(record_type)
    if resource_type is None:
        return None
    subject = {"reference": f"Patient/{patient_id}"}
    base = _base(resource_type, record_id, updated_at)
    recorded = recorded_at.isoformat()
    resource: dict[str, Any]
    if record_type in ("condition", "symptom"):
        clinical = {"resolved": "resolved"}.get(str(data.get("status")), "active")
        severity = data.get("severity")
        notes = [data.get("notes")]
        if record_type == "symptom" and data.get("duration_days") is not None:
            notes.append(f"Duration: {data['duration_days']} days")
        resource = {
            **base,
            "clinicalStatus": _coding(codes.CLINICAL_STATUS_SYSTEM, clinical),
            "verificationStatus": _coding(CONDITION_VERIFICATION_SYSTEM, "unconfirmed"),
            "category": [_coding(codes.CONDITION_CATEGORY_SYSTEM, "problem-list-item")],
            "severity": {"text": str(severity)} if severity else None,
            "code": _concept(data.get("name")),
            "subject": subject,
            **_date_or_text(data, "onset_date", "onset_text"),
            "recordedDate": recorded,
            "note": _notes(*notes),
        }
    elif record_type == "allergy":
        category = data.get("category")
        reaction = _drop({"manifestation": [_concept(data.get("reaction"))],
                          "severity": data.get("severity") or None}) if _text(data.get("reaction")) else None
        resource = {
            **base,
            "clinicalStatus": _coding(codes.ALLERGY_CLINICAL_SYSTEM, "active"),
            "verificationStatus": _coding(ALLERGY_VERIFICATION_SYSTEM, "unconfirmed"),
            "category": [category] if category else None,
            "code": _concept(data.get("substance")),
            "patient": subject,
            "recordedDate": recorded,
            "reaction": [reaction] if reaction else None,
            "note": _notes(data.get("notes")),
        }
    elif record_type == "medication":
        dosage_text = " ".join(t for t in (_text(data.get("dose")), _text(data.get("frequency"))) if t) or None
        dosage = _drop({"text": dosage_text, "route": _concept(data["route"]) if _text(data.get("route")) else None})
        resource = {
            **base,
            "status": {"active": "active", "stopped": "stopped"}.get(str(data.get("status", "active")), "unknown"),
            "medicationCodeableConcept": _concept(data.get("name")),
            "subject": subject,
            "dateAsserted": recorded,
            "informationSource": subject,
            "dosage": [dosage] if dosage else None,
            "note": _notes(data.get("notes")),
        }
    elif record_type == "family_history":
        resource = {
            **base,
            "status": "partial",
            "patient": subject,
            "date": recorded,
            "relationship": _concept(data.get("relationship")),
            "condition": [_drop({"code": _concept(data.get("condition")), "note": _notes(data.get("notes"))})],
        }
    else:
        resource = _observation(base, record_type, data, subject, recorded)
    return mapping.validated(_drop(resource))


def _quantity(value: Any, unit: str | None) -> dict[str, Any]:
    return _drop({"value": float(value), "unit": unit, "system": UCUM if unit else None, "code": unit})


def _observation(base: dict[str, Any], record_type: str, data: dict[str, Any], subject: dict[str, Any],
                 recorded: str) -> dict[str, Any]:
    observation: dict[str, Any] = {**base, "status": "final", "subject": subject}
    if record_type == "vital":
        code, display = VITALS.get(str(data.get("kind")), (None, None))
        observation["category"] = [_coding(codes.OBSERVATION_CATEGORY_SYSTEM, "vital-signs")]
        observation["code"] = ({"coding": [{"system": LOINC, "code": code, "display": display}],
                                "text": display} if code else _concept(data.get("kind")))
        observation["effectiveDateTime"] = str(data.get("measured_at") or recorded)
        unit = data.get("unit")
        if data.get("kind") == "blood_pressure":
            observation["component"] = [
                {"code": {"coding": [{"system": LOINC, "code": c, "display": d}]},
                 "valueQuantity": _quantity(data[key], unit)}
                for (c, d), key in ((SYSTOLIC, "systolic"), (DIASTOLIC, "diastolic")) if data.get(key) is not None]
        elif data.get("value") is not None:
            observation["valueQuantity"] = _quantity(data["value"], unit)
        else:
            observation["dataAbsentReason"] = {"text": "not measured"}
    elif record_type == "social_history":
        aspect = str(data.get("aspect") or "other")
        observation["category"] = [_coding(codes.OBSERVATION_CATEGORY_SYSTEM, "social-history")]
        observation["code"] = ({"coding": [{"system": LOINC, "code": SMOKING[0], "display": SMOKING[1]}],
                                "text": "smoking"} if aspect == "smoking" else {"text": aspect.replace("_", " ")})
        observation["effectiveDateTime"] = recorded
        observation["valueString"] = _text(data.get("value")) or "Not stated"
        observation["note"] = _notes(data.get("notes"))
    else:  # chief_complaint
        observation["category"] = [_coding(codes.OBSERVATION_CATEGORY_SYSTEM, "survey")]
        observation["code"] = {"coding": [{"system": LOINC, "code": CHIEF_COMPLAINT[0],
                                           "display": CHIEF_COMPLAINT[1]}]}
        observation["effectiveDateTime"] = recorded
        observation["valueString"] = _text(data.get("text")) or "Not stated"
    return observation


# --- the summary ------------------------------------------------------------------------------------


def summary_document(*, session_id: uuid.UUID, patient_id: uuid.UUID, text: str, generated_at: datetime,
                     machine_generated: bool, edited: bool, generator: str,
                     updated_at: datetime | None = None, has_response: bool = True) -> dict[str, Any]:
    """`has_response`: the session has a QuestionnaireResponse to relate to (not a voice or staff
    intake without a questionnaire and answers: a reference to it would point nowhere)."""
    return mapping.validated(_drop({
        **_base("DocumentReference", session_id, updated_at),
        "status": "current",
        "docStatus": "preliminary" if machine_generated and not edited else "final",
        "type": {"coding": [{"system": LOINC, "code": SUMMARY_DOC[0], "display": SUMMARY_DOC[1]}],
                 "text": "Intake summary"},
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": generated_at.isoformat(),
        "description": f"Intake summary ({'reviewed' if edited else generator})",
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(text.encode()).decode(),
                                    "title": "Intake summary", "creation": generated_at.isoformat()}}],
        "context": {"related": [{"reference": f"QuestionnaireResponse/{session_id}"}]} if has_response else None,
    }))
