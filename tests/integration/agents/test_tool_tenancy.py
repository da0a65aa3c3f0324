"""Every id a tool takes is resolved in the caller's organisation, like the API's (issue 9).

The walk reads each tool's input schema from the registry, so a tool added tomorrow with an id field
is covered the day it is added (it needs a valid input in `_INPUTS`). Another organisation's real id
and an id that exists nowhere get the same refusal naming the field — a 422 on that field or the
404 of that kind — recorded as a failed or invalid tool run, and nothing is written.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.agents import registry
from prm.agents.models import ToolRun
from prm.appointments.models import Appointment
from prm.core import clock
from prm.identity.models import Organisation
from prm.tickets.models import Ticket
from tests.conftest import ClientFactory
from tests.integration.test_cross_organisation_references import APPT, NOW, _world


def _inputs(mine: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A valid input of every tool that takes an id (with this organisation's ids)."""
    return {
        "get_patient": {"patient_id": mine["patient_id"]},
        "update_patient": {"patient_id": mine["patient_id"], "preferred_language": "es"},
        "find_slots": {"service_id": mine["service_id"], "start_date": "2026-03-24",
                       "practitioner_id": mine["practitioner_id"]},
        "book_appointment": {"patient_id": mine["patient_id"], "practitioner_id": mine["practitioner_id"],
                             "service_id": mine["service_id"], "location_id": mine["location_id"],
                             "start_at": "2026-03-24T11:00:00+01:00"},
        "confirm_appointment": {"appointment_id": mine["appointment_id"]},
        "cancel_appointment": {"appointment_id": mine["appointment_id"], "reason": "Patient asked"},
        "reschedule_appointment": {"appointment_id": mine["appointment_id"], "start_at": "2026-03-25T10:00:00+01:00",
                                   "practitioner_id": mine["practitioner_id"]},
        "create_ticket": {"subject": "Walk", "patient_id": mine["patient_id"],
                          "conversation_id": mine["conversation_id"]},
        "add_ticket_comment": {"ticket_id": mine["ticket_id"], "body": "Called back"},
        "send_notification": {"patient_id": mine["patient_id"], "template_key": "appointment_reminder",
                              "channel": "sms", "variables": APPT},
        "search_conversations": {"query": "walk", "patient_id": mine["patient_id"]},
    }


def _id_fields(schema: dict[str, Any]) -> list[str]:
    return [name for name in schema.get("properties", {}) if name.endswith("_id")]


def _refused(status: int, body: dict[str, Any], field: str) -> bool:
    if status == 422:
        return any(e["field"] == field for e in body.get("errors", []))
    return status == 404 and body.get("code") == f"{field.removesuffix('_id')}_not_found"


async def _counts(session: AsyncSession) -> tuple[int, int]:
    tickets = await session.scalar(select(func.count()).select_from(Ticket))
    appointments = await session.scalar(select(func.count()).select_from(Appointment))
    return int(tickets or 0), int(appointments or 0)


async def test_every_id_a_tool_takes_is_resolved_within_the_callers_organisation(
        session: AsyncSession, org: Organisation, other_org: Organisation, make_client: ClientFactory) -> None:
    admin, theirs_admin = await make_client("admin"), await make_client("admin", for_org=other_org)
    agent = await make_client("agent")
    failures: list[str] = []
    checked = 0
    with clock.frozen(NOW):
        mine = await _world(session, org, admin)
        theirs = await _world(session, other_org, theirs_admin)
        inputs = _inputs(mine)
        before = await _counts(session)
        for spec in registry.all_tools():
            fields = _id_fields(spec.input_schema())
            if not fields:
                continue
            if spec.name not in inputs:
                failures.append(f"{spec.name}: no valid input in _inputs for {fields}")
                continue
            for field in fields:
                for label, value in (("another organisation's id", theirs[field]), ("an unknown id", uuid.uuid4())):
                    r = await agent.post(f"/agents/tools/{spec.name}/execute",
                                         json={**inputs[spec.name], field: str(value)})
                    checked += 1
                    body = r.json()
                    if not _refused(r.status_code, body, field):
                        failures.append(f"{spec.name} `{field}` = {label}: {r.status_code} {r.text[:200]}")
                        continue
                    run = await session.get(ToolRun, uuid.UUID(body["run_id"]))
                    if run is None or run.status not in ("failed", "invalid"):
                        failures.append(f"{spec.name} `{field}` = {label}: not recorded as refused")
        after = await _counts(session)
    assert failures == [], "\n".join(failures)
    assert after == before  # nothing written in either organisation
    assert checked >= 30
