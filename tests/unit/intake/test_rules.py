"""Intake's pure rules: record validation, answers, completeness, the offline summary."""

from __future__ import annotations

from prm.intake import rules, summary
from prm.intake.schemas import QuestionnaireItem

ITEMS = rules.stored_items([QuestionnaireItem.model_validate(i) for i in [
    {"linkId": "reason", "type": "text", "required": True},
    {"linkId": "born", "type": "date"},
    {"linkId": "seen", "type": "dateTime"},
    {"linkId": "symptoms", "type": "choice", "repeats": True,
     "answerOption": [{"valueCoding": {"system": "http://snomed.info/sct", "code": "49727002"}},
                      {"valueString": "fever"}]},
    {"linkId": "trip", "type": "group", "item": [{"linkId": "trip.where", "type": "string", "required": True}]},
    {"linkId": "note", "type": "display"},
]])


def test_record_data_is_validated_and_normalised() -> None:
    data, problems = rules.record_data("vital", {"kind": "body_temperature", "value": 38.2})
    assert problems == [] and data == {"kind": "body_temperature", "value": 38.2, "unit": "Cel"}
    _, problems = rules.record_data("symptom", {"name": "", "severity": "awful", "colour": "red"})
    assert {p.field for p in problems} == {"data.name", "data.severity", "data.colour"}
    _, problems = rules.record_data("vital", {"kind": "blood_pressure", "value": 120})
    assert [p.field for p in problems] == ["data"]


def test_answers_fit_their_item() -> None:
    assert rules.answer_problems(ITEMS, "reason", "Cough") == []
    assert rules.answer_problems(ITEMS, "born", "1990-02-30")[0].message.startswith("must be a date")
    assert rules.answer_problems(ITEMS, "seen", "2026-11-30T10:00:00")[0].field == "data.value"  # no offset
    assert rules.answer_problems(ITEMS, "seen", "2026-11-30T10:00:00+01:00") == []
    assert rules.answer_problems(ITEMS, "symptoms", ["49727002", "fever"]) == []
    assert rules.answer_problems(ITEMS, "symptoms", ["fever", "rash"])[0].field == "data.value.1"
    assert rules.answer_problems(ITEMS, "reason", ["a", "b"])[0].message.startswith("this item takes one")
    assert rules.answer_problems(ITEMS, "note", "x")[0].field == "data.link_id"
    assert rules.answer_problems(ITEMS, "nope", "x")[0].field == "data.link_id"


def test_required_items_inside_a_group_count_once_the_group_is_answered() -> None:
    assert rules.missing_required(ITEMS, set()) == ["reason"]
    assert rules.missing_required(ITEMS, {"reason"}) == []
    # answering part of the group makes its required items required
    extended = ITEMS + rules.stored_items([QuestionnaireItem.model_validate(
        {"linkId": "g2", "type": "group", "item": [{"linkId": "g2.a", "type": "string"},
                                                   {"linkId": "g2.b", "type": "string", "required": True}]})])
    assert rules.missing_required(extended, {"reason", "g2.a"}) == ["g2.b"]


def test_offline_summary_is_deterministic_and_flags_what_matters() -> None:
    items = [summary.Item("chief_complaint", {"text": "Chest pain at night"}),
             summary.Item("symptom", {"name": "sweating", "severity": "severe", "onset_text": "yesterday"}),
             summary.Item("vital", {"kind": "blood_pressure", "systolic": 150.0, "diastolic": 95.0,
                                    "unit": "mm[Hg]"}),
             summary.Item("family_history", {"relationship": "father", "condition": "myocardial infarction"})]
    content, text = summary.offline(items)
    assert summary.offline(list(items)) == (content, text)
    assert content["symptoms"] == ["sweating (severe, yesterday)"]
    assert content["vitals"] == ["blood pressure 150/95 mm[Hg]"]
    assert content["history"] == ["father: myocardial infarction"]
    assert content["red_flags"] == ["chest pain", "severe symptom: sweating"]
    assert "Allergies not recorded (ask: none known?)" in content["questions"]
    assert text.splitlines()[0] == "Reason: Chest pain at night"
    assert set(content) == set(summary.KEYS)


def test_a_models_answer_must_have_the_summary_shape() -> None:
    good = {k: [] for k in summary.KEYS} | {"chief_complaint": "Cough", "answers": {}}
    assert summary.normalise(good) == good
    assert summary.normalise({**good, "medications": "aspirin"}) is None
    assert summary.normalise({"chief_complaint": "x"})["symptoms"] == []
    assert summary.normalise(["not", "an", "object"]) is None  # type: ignore[arg-type]
