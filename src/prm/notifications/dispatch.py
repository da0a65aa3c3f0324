"""Sending one notification: render the template for the patient and send it through
`communications`, walking the fallback channels and saying why a channel was skipped."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from prm.communications import service as communications
from prm.communications.schemas import CommunicationCreate
from prm.core import references
from prm.core.auth import Principal
from prm.core.errors import Conflict, NotFound, ValidationFailed
from prm.notifications.catalogue import Found, _template_error, find_templates
from prm.notifications.templates import TemplateError, render
from prm.patients import service as patients

if TYPE_CHECKING:
    from prm.communications.models import Communication
    from prm.patients.models import Patient
    from prm.patients.service import ConsentDecision

FALLBACK_ORDER = ("whatsapp", "sms", "email")


def fallback_chain(preferred: str | None) -> list[str]:
    chain = [preferred] if preferred else []
    return chain + [c for c in FALLBACK_ORDER if c not in chain]


# --- sending ---------------------------------------------------------------------------------------


def patient_variables(patient: Patient) -> dict[str, Any]:
    return {
        "patient_name": patient.given_name or patient.display_name,
        "patient_full_name": patient.display_name,
    }


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _plan(
    session: AsyncSession,
    org_id: uuid.UUID,
    patient: Patient,
    channel: str,
    template_key: str,
    purpose: str,
    values: dict[str, Any],
    *,
    strict: bool,
    consent: ConsentDecision | None,
    found: Found | None,
) -> tuple[CommunicationCreate, bool]:
    """The message to send on `channel` and whether its WhatsApp window was found open, or
    _Skip(reason) (when not `strict`) if it cannot go there. `consent` and `found` were read for
    every channel of the chain at once (`send_notification`)."""
    if not strict:
        if not communications.address_of(patient, channel):
            raise _Skip("no_address")
        if consent is None or not consent.allowed:
            raise _Skip(f"consent:{consent.reason if consent else None}")
    if found is None:
        if strict:
            raise ValidationFailed.field(
                "template_key", f"no template {template_key!r} for {channel}", code="template_not_found"
            )
        raise _Skip("no_template")
    source, row = found
    try:
        rendered = render(source, values)
    except TemplateError as exc:
        raise _template_error(exc) from None
    content_sid = row.content_sid if row is not None and channel == "whatsapp" else None
    content_variables = (
        {slot: str(values.get(name, "")) for slot, name in (row.content_variables or {}).items()}
        if content_sid and row is not None
        else {}
    )
    window_open = False
    if channel == "whatsapp" and not content_sid and not strict:
        if not await communications.whatsapp_window_open(session, org_id, patient.id):
            raise _Skip("whatsapp_window_closed")
        window_open = True
    return CommunicationCreate(
        patient_id=patient.id,
        channel=channel,
        purpose=purpose,  # type: ignore[arg-type]
        body=rendered.body,
        subject=rendered.subject if channel == "email" else None,
        html_body=rendered.html_body if channel == "email" else None,
        content_sid=content_sid,
        content_variables=content_variables,
        template_key=template_key,
    ), window_open


async def send_notification(
    session: AsyncSession,
    who: Principal,
    *,
    patient_id: uuid.UUID,
    template_key: str,
    variables: dict[str, Any],
    channel: str | None = None,
    purpose: str = "care",
    idempotency_key: str | None = None,
    send_at: datetime | None = None,
    patient: Patient | None = None,
    look_up_key: bool = True,
) -> Communication:
    """Render `template_key` for the patient and queue it; returns the communication.

    With `channel`, only that channel (its refusal is raised as is: 409 consent, 422 window or
    template). Without, the patient's preference then the fallback chain; 409 `no_channel_available`
    with each channel's reason when none can be used. `patient`: the patient as `patients.get` gave
    it to the caller in this transaction (not read again). A repeated `idempotency_key` returns the
    first message; `look_up_key=False` skips looking for it first (a caller that runs once per key,
    an event's delivery): a repeat is then caught when the message is inserted, after the checks.
    """
    org_id = who.org_id
    if idempotency_key and look_up_key:
        existing = await communications.find_by_idempotency_key(session, org_id, idempotency_key)
        if existing is not None:
            return existing
    if patient is None or patient.id != patient_id or patient.org_id != org_id:
        try:
            patient = await patients.get(session, org_id, patient_id)
        except NotFound:
            raise references.unknown("patient_id", "patient") from None
    values = {**patient_variables(patient), **variables}
    chain = [channel] if channel else fallback_chain(patient.preferred_channel)
    strict = channel is not None
    # what the chain needs, one statement each: consent of the channels with an address, then the
    # templates of those that may be used (a patient with no address costs neither)
    consents: dict[str, ConsentDecision] = {}
    usable = chain
    if not strict:
        reachable = [ch for ch in chain if communications.address_of(patient, ch)]
        consents = await patients.consents_allow(session, patient, channels=reachable, purpose=purpose)
        usable = [ch for ch in reachable if consents[ch].allowed]
    templates = await find_templates(session, org_id, template_key, usable, patient.preferred_language)
    skipped: list[dict[str, str]] = []
    for ch in chain:
        try:
            data, window_open = await _plan(
                session, org_id, patient, ch, template_key, purpose, values, strict=strict,
                consent=consents.get(ch), found=templates.get(ch),
            )
        except _Skip as skip:
            skipped.append({"channel": ch, "reason": skip.reason})
            continue
        data.idempotency_key = idempotency_key
        data.send_at = send_at
        checked = communications.Prechecked(patient=patient, consent=not strict, window=window_open, new_key=True)
        return await communications.send(session, who, data, prechecked=checked,
                                          details={"fallback_from": skipped} if skipped else None)
    raise Conflict(
        "No channel can reach this patient for this notification: "
        + ", ".join(f"{s['channel']} ({s['reason']})" for s in skipped),
        code="no_channel_available",
        attempts=skipped,
    )
