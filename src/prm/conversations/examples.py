"""Documentation and examples of the conversations inbox (see docs/api-examples.md)."""

from __future__ import annotations

from prm.core.apidocs import Err, Op, ids, not_found

NOT_FOUND = not_found("conversation", "conversation_not_found", "Conversation")
CLOSED = Err(
    409,
    "conversation_closed",
    "The conversation is closed; open a new one to write to the patient",
    "The conversation is closed",
)

OPERATIONS = {
    "GET /conversations": Op(
        "The inbox, most recent activity first: filter by status, channel, assignee, unread, patient or "
        "whether the booking assistant is handling it.",
        query={"status": "open", "channel": "sms"},
        given=["conversation_message"],
    ),
    "POST /conversations": Op(
        "Opens the conversation with a patient on a channel, or returns the open one (one open "
        "conversation per patient and channel).",
        body={"patient_id": ids.patient, "channel": "sms"},
        errors=[
            Err(
                422,
                "patient_not_found",
                "patient_id: no such patient in this organisation",
                "`patient_id` names no patient of the organisation",
            )
        ],
    ),
    "GET /conversations/{conversation_id}": Op(
        "One conversation: patient, channel, status, assignee, unread count, and the booking assistant's "
        "state (whether it is handling the conversation and what it last offered)."
    ),
    "GET /conversations/{conversation_id}/messages": Op(
        "The conversation's messages in and out, newest first, with their delivery status and media.",
        path={"conversation_id": ids.sms_conversation},
        given=["conversation_message"],
    ),
    "POST /conversations/{conversation_id}/messages": Op(
        "Sends a reply on the conversation's channel; a person replying takes over from the booking "
        "assistant. Free-form WhatsApp needs a message from the patient in the last 24 hours.",
        path={"conversation_id": ids.sms_conversation},
        body={"body": "Hola Maria, le confirmamos la cita del martes a las 10:00. ¡Hasta pronto!"},
        errors=[CLOSED],
    ),
    "POST /conversations/{conversation_id}/read": Op("Marks every message read (the unread count goes to 0)."),
    "POST /conversations/{conversation_id}/assign": Op(
        "Assigns the conversation to a staff member (the assistant stops answering) or unassigns it "
        "(`assignee_id: null`).",
        body={"assignee_id": ids.user},
        errors=[
            Err(
                422,
                "assignee_not_found",
                "assignee_id: no such active staff user in this organisation",
                "`assignee_id` names no active staff user",
            )
        ],
    ),
    "POST /conversations/{conversation_id}/status": Op(
        "Changes the status; `snoozed` needs `snoozed_until`, when it opens again.",
        body={"status": "snoozed", "snoozed_until": "2026-03-24T08:00:00Z"},
    ),
    "POST /conversations/{conversation_id}/bot": Op(
        "Hands the conversation back to the booking assistant (unassigns it).", errors=[CLOSED]
    ),
}
