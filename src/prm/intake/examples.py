"""Documentation and examples of the intake API (see `prm.core.apidocs`, `docs/api-examples.md`)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = {**not_found("session", "intake_session_not_found", "Intake session"),
             **not_found("questionnaire", "questionnaire_not_found", "Questionnaire")}

STALE = Err(412, "intake_session_version_mismatch", "The session is at version 4, not 3: read it again",
            "`If-Match` names an older version of the session", extra={"current_version": 4})
FROZEN = Err(409, "intake_session_frozen", "The session is submitted; it can no longer change",
             "The session was submitted or cancelled")
BAD_IF_MATCH = Err(422, "invalid_if_match", 'If-Match: must be the ETag of the session, e.g. "3"',
                   "`If-Match` is not an ETag of the session")
INVALID_RECORD = Err(422, "invalid_intake_record", "data.severity: Input should be 'mild', 'moderate' or 'severe'",
                     "A record's data does not fit its type, or an answer does not fit the questionnaire item",
                     extra={"errors": [{"field": "data.severity", "message": "Input should be 'mild', 'moderate' "
                                        "or 'severe'", "type": "invalid_intake_record"}]})
TYPE_MISMATCH = Err(409, "record_type_mismatch", "type: item 'med-1' is a medication; delete it or use a new id",
                    "The item exists with another type")
UNKNOWN_REFERENCE = Err(422, "unknown_reference", "assigned_practitioner_id: no practitioner with this id in this "
                        "organisation", "An id in the body names nothing in the caller's organisation")
CONSENT = Err(409, "intake_consent_required", "The patient has not consented to intake data being kept in their "
              "record (not_opted_in); send consent with the link",
              "The patient's intake consent is neither recorded nor sent", extra={"reason": "not_opted_in"})
NO_SUMMARY = Err(404, "intake_summary_not_found", "Intake session has no summary yet (pending)",
                 "The summary is not written yet (see `summary_status`)", extra={"summary_status": "pending"})
WRITES = [STALE, FROZEN, BAD_IF_MATCH]

MARIA_CONTACT = {"given_name": "Maria", "family_name": "García López", "birth_date": "1984-05-12",
                 "phone": "+34 612 34 56 78", "email": "maria.garcia@example.org"}

OPERATIONS = {
    "POST /intake/sessions": Op(
        body={"source": "web_form", "questionnaire_key": "new-patient", "contact": MARIA_CONTACT, "language": "es",
              "assigned_practitioner_id": ids.practitioner},
        given=["questionnaire"], status=201,
        errors=[Err(422, "unknown_questionnaire", "questionnaire_key: no published questionnaire with this key",
                    "No published (unretired) questionnaire has this key"), UNKNOWN_REFERENCE, CONSENT]),
    "GET /intake/sessions": Op(query={"status": "open", "limit": 20}, given=["session"]),
    "GET /intake/sessions/{session_id}": Op(),
    "PATCH /intake/sessions/{session_id}": Op(body={"assigned_practitioner_id": ids.practitioner, "language": "es"},
                                              errors=[*WRITES, UNKNOWN_REFERENCE]),
    "POST /intake/sessions/{session_id}/cancel": Op(errors=WRITES),
    "PUT /intake/sessions/{session_id}/records/{item}": Op(
        path={"item": "med-1"},
        body={"type": "medication", "data": {"name": "Ibuprofen", "dose": "400 mg", "frequency": "every 8 hours"}},
        errors=[*WRITES, INVALID_RECORD, TYPE_MISMATCH]),
    "POST /intake/sessions/{session_id}/records": Op(
        body={"records": [
            {"client_item_id": "reason", "type": "chief_complaint", "data": {"text": "Toothache for three days"}},
            {"client_item_id": "pain", "type": "symptom",
             "data": {"name": "toothache", "severity": "moderate", "duration_days": 3}},
            {"client_item_id": "allergy-1", "type": "allergy",
             "data": {"substance": "Penicillin", "reaction": "rash", "severity": "moderate"}}]},
        errors=[*WRITES, INVALID_RECORD, TYPE_MISMATCH]),
    "GET /intake/sessions/{session_id}/records": Op(query={"include_deleted": False}),
    "DELETE /intake/sessions/{session_id}/records/{item}": Op(
        path={"item": "reason"},
        errors=[*WRITES, Err(404, "intake_record_not_found", "No record 'reason' in this session",
                             "No live record has this item id")]),
    "POST /intake/sessions/{session_id}/link": Op(
        body={"patient_id": ids.patient, "consent": {"granted": True, "method": "electronic"}},
        errors=[*WRITES, CONSENT, Err(422, "unknown_reference", "patient_id: no patient with this id in this "
                                      "organisation", "`patient_id` names no patient of the organisation")]),
    "POST /intake/sessions/{session_id}/submit": Op(errors=[*WRITES, Err(
        422, "intake_incomplete", "The intake is incomplete: smoker",
        "A required questionnaire item (or, without a questionnaire, the chief complaint) is not answered",
        extra={"errors": [{"field": "records.smoker", "message": "required, not answered",
                           "type": "intake_incomplete"}]})]),
    "GET /intake/sessions/{session_id}/summary": Op(path={"session_id": ids.summarised_session},
                                                    errors=[NO_SUMMARY]),
    "PUT /intake/sessions/{session_id}/summary": Op(
        path={"session_id": ids.summarised_session},
        body={"text": "Toothache for three days, moderate. Penicillin allergy (rash). Takes no medication."},
        errors=[NO_SUMMARY]),
    "POST /intake/sessions/{session_id}/summary/regenerate": Op(
        path={"session_id": ids.summarised_session},
        errors=[Err(409, "intake_summary_edited", "Staff edited this summary; it is not regenerated",
                    "Staff edited the summary"),
                Err(409, "intake_not_submitted", "Only a submitted intake is summarised",
                    "The session is not submitted")]),
    "POST /intake/questionnaires": Op(
        body={"key": "dental-first-visit", "title": "Dental first visit", "item": [
            {"linkId": "reason", "text": "What brings you in?", "type": "text", "required": True},
            {"linkId": "pain", "text": "Pain today (0-10)", "type": "integer"},
            {"linkId": "anaesthesia", "text": "Any problem with local anaesthesia before?", "type": "boolean",
             "required": True}]},
        errors=[Err(422, "invalid_questionnaire", "item.1.linkId: 'reason' is already used by item.0",
                    "The definition is not valid (`errors` names each item field)",
                    extra={"errors": [{"field": "item.1.linkId", "message": "'reason' is already used by item.0",
                                       "type": "invalid_questionnaire"}]})]),
    "GET /intake/questionnaires": Op(given=["questionnaire"]),
    "GET /intake/questionnaires/{questionnaire_id}": Op(
        query={"version": 1},
        errors=[Err(404, "questionnaire_version_not_found", "Questionnaire new-patient has no version 7",
                    "The questionnaire has no such version")]),
    "POST /intake/questionnaires/{questionnaire_id}/retire": Op(
        errors=[Err(409, "questionnaire_retired", "The questionnaire is already retired", "Retired before")]),
    "GET /intake/statistics": Op(query={"from_date": "2026-03-01", "to_date": "2026-03-23", "interval": "week"},
                                 given=["summarised_session"]),
}
