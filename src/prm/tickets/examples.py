"""Documentation and examples of tickets (see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = not_found("ticket", "ticket_not_found", "Ticket")
STALE = Err(412, "stale_version", "The ticket changed (version 3); read it again and retry",
            "`If-Match` names an older version: someone else changed the ticket")
CLOSED = Err(409, "ticket_closed", "Ticket is closed", "The ticket is closed")

OPERATIONS = {
    "POST /tickets": Op(
        "Opens a ticket (a patient request to handle), optionally linked to a patient and a conversation; "
        "`auto_assign` gives it to the least-loaded staff member. Its SLA due time follows the priority.",
        body={"subject": "Asks for a call back about the invoice", "description": "Invoice 2026-0311 charged twice",
              "category": "billing", "priority": "high", "patient_id": ids.patient,
              "conversation_id": ids.conversation, "tags": ["invoice"], "auto_assign": False},
        errors=[Err(422, "patient_not_found", "patient_id: no such patient in this organisation",
                    "`patient_id` names no patient of the organisation")]),
    "GET /tickets": Op("Tickets with filters and full-text search (`q`), most urgent first.",
                       query={"status": "open", "q": "invoice"}, given=["ticket"]),
    "GET /tickets/{ticket_id}": Op("One ticket; its `ETag` header is the version to send in `If-Match`."),
    "PATCH /tickets/{ticket_id}": Op(
        "Changes the fields sent. Send `If-Match` with the ETag you read to avoid overwriting someone "
        "else's change.", body={"priority": "urgent", "tags": ["invoice", "refund"]}, headers={"If-Match": '"1"'},
        errors=[STALE, CLOSED]),
    "POST /tickets/{ticket_id}/status": Op(
        "Moves the ticket through open → in_progress → waiting → resolved → closed, with an optional comment.",
        body={"status": "in_progress", "comment": "Calling the patient this afternoon"},
        errors=[STALE, CLOSED, Err(409, "invalid_transition", "Cannot move a closed ticket to in_progress",
                                   "The status change is not allowed")]),
    "POST /tickets/{ticket_id}/assign": Op(
        "Assigns to a staff member, unassigns (`assignee_id: null`), or auto-assigns (`auto: true`).",
        body={"assignee_id": ids.user}, errors=[STALE, CLOSED]),
    "GET /tickets/{ticket_id}/comments": Op("The ticket's comments, oldest first; `internal` filters staff notes.",
                                            given=["ticket_comment"]),
    "POST /tickets/{ticket_id}/comments": Op(
        "Adds a comment; `internal: true` is a staff-only note.",
        body={"body": "Refund approved by accounts; patient informed by phone.", "internal": True}),
}
