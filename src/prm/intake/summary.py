"""The clinical summary of an intake, built without a model (the offline default), and the shape a
model's answer must have. Pure: records in, a structured summary and its text out.

The structure (`content`) has fixed keys, so staff screens and the FHIR hand-over read it the same
way whichever generator wrote it: `chief_complaint`, `symptoms`, `medications`, `allergies`,
`conditions`, `history` (family and social), `vitals`, `insurance`, `answers`, `notes`,
`red_flags` (findings that deserve attention first) and `questions` (what is missing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

KEYS = ("chief_complaint", "symptoms", "medications", "allergies", "conditions", "history", "vitals",
        "insurance", "answers", "notes", "red_flags", "questions")

# Words in a complaint or symptom that make a clinician look first (a triage hint, not a diagnosis).
RED_FLAG_WORDS = ("chest pain", "shortness of breath", "difficulty breathing", "fainting", "unconscious",
                  "seizure", "suicid", "severe bleeding", "stroke", "slurred speech", "anaphyla",
                  "dolor de pecho", "falta de aire")


@dataclass(frozen=True)
class Item:
    """One live record: its type and its stored data."""

    type: str
    data: dict[str, Any]


def _join(*parts: object, sep: str = ", ") -> str:
    return sep.join(str(p) for p in parts if p not in (None, ""))


def _symptom(d: dict[str, Any]) -> str:
    extra = _join(d.get("severity"), f"{d['duration_days']:g} days" if d.get("duration_days") is not None else None,
                  f"since {d['onset_date']}" if d.get("onset_date") else d.get("onset_text"))
    return f"{d['name']} ({extra})" if extra else str(d["name"])


def _medication(d: dict[str, Any]) -> str:
    text = _join(d["name"], d.get("dose"), d.get("frequency"), d.get("route"), sep=" ")
    return text + (" [stopped]" if d.get("status") == "stopped" else "")


def _allergy(d: dict[str, Any]) -> str:
    extra = _join(d.get("reaction"), d.get("severity"))
    return f"{d['substance']} ({extra})" if extra else str(d["substance"])


def _vital(d: dict[str, Any]) -> str:
    if d["kind"] == "blood_pressure":
        return f"blood pressure {d['systolic']:g}/{d['diastolic']:g} {d.get('unit', 'mm[Hg]')}"
    return f"{d['kind'].replace('_', ' ')} {d['value']:g} {d.get('unit', '')}".strip()


def offline(items: Iterable[Item], *, required_missing: Iterable[str] = ()) -> tuple[dict[str, Any], str]:
    """A deterministic structured summary and its text (same records → same summary, byte for byte)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_type.setdefault(item.type, []).append(item.data)
    complaints = [d["text"] for d in by_type.get("chief_complaint", [])]
    content: dict[str, Any] = {
        "chief_complaint": "; ".join(complaints) or None,
        "symptoms": [_symptom(d) for d in by_type.get("symptom", [])],
        "medications": [_medication(d) for d in by_type.get("medication", [])],
        "allergies": [_allergy(d) for d in by_type.get("allergy", [])],
        "conditions": [_join(d["name"], "resolved" if d.get("status") == "resolved" else None, sep=" - ")
                       for d in by_type.get("condition", [])],
        "history": [f"{d['relationship']}: {d['condition']}" for d in by_type.get("family_history", [])]
        + [f"{d['aspect'].replace('_', ' ')}: {d['value']}" for d in by_type.get("social_history", [])],
        "vitals": [_vital(d) for d in by_type.get("vital", [])],
        "insurance": [_join(d["payer"], d.get("plan"), d.get("member_number"), sep=" ")
                      for d in by_type.get("insurance", [])],
        "answers": {str(d["link_id"]): d["value"] for d in by_type.get("answer", [])},
        "notes": [d["text"] for d in by_type.get("note", [])],
    }
    lowered = " ".join([*complaints, *content["symptoms"]]).lower()
    flags = [w for w in RED_FLAG_WORDS if w in lowered]
    flags += [f"severe allergy: {d['substance']}" for d in by_type.get("allergy", []) if d.get("severity") == "severe"]
    flags += [f"severe symptom: {d['name']}" for d in by_type.get("symptom", []) if d.get("severity") == "severe"]
    content["red_flags"] = flags
    questions = [f"Missing answer: {link_id}" for link_id in required_missing]
    if not complaints and not content["answers"]:
        questions.append("No reason for the visit was given")
    if not by_type.get("allergy"):
        questions.append("Allergies not recorded (ask: none known?)")
    if not by_type.get("medication"):
        questions.append("Medications not recorded (ask: none?)")
    content["questions"] = questions
    return content, render(content)


def render(content: dict[str, Any]) -> str:
    """The summary's text, one labelled line per non-empty section."""
    labels = (("chief_complaint", "Reason"), ("symptoms", "Symptoms"), ("medications", "Medications"),
              ("allergies", "Allergies"), ("conditions", "Conditions"), ("history", "History"),
              ("vitals", "Reported vitals"), ("insurance", "Insurance"), ("notes", "Notes"),
              ("red_flags", "Attention"), ("questions", "To ask"))
    lines = []
    for key, label in labels:
        value = content.get(key)
        if not value:
            continue
        lines.append(f"{label}: {value if isinstance(value, str) else '; '.join(str(v) for v in value)}")
    return "\n".join(lines)


def normalise(answer: dict[str, Any]) -> dict[str, Any] | None:
    """A model's structured answer with exactly the summary's keys (lists of text, text or null);
    None when it is not usable."""
    if not isinstance(answer, dict):
        return None
    out: dict[str, Any] = {}
    for key in KEYS:
        value = answer.get(key)
        if key == "chief_complaint":
            out[key] = value if isinstance(value, str) and value.strip() else None
        elif key == "answers":
            out[key] = value if isinstance(value, dict) else {}
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = value
        elif value in (None, ""):
            out[key] = []
        else:
            return None
    return out
