"""Agents: the plan's tool tests — the catalogue, executing tools over the real services with scope
checks, validation and a tool-run row for every call; failures roll back their writes."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.agents.models import ToolRun
from prm.appointments.models import Appointment
from prm.core import clock
from prm.identity.models import Organisation
from prm.patients.models import Patient
from prm.tickets.models import Ticket
from tests.conftest import ClientFactory
from tests.fixtures.factories import make_patient, principal
from tests.integration.appointments.conftest import NOW, at_local, build_clinic

PLAN_TOOLS = {"search_patients", "get_patient", "update_patient", "find_slots", "book_appointment",
              "confirm_appointment", "cancel_appointment", "reschedule_appointment", "create_ticket",
              "add_ticket_comment", "send_notification"}


async def _run(client: httpx.AsyncClient, name: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post(f"/agents/tools/{name}/execute", json=body, headers=headers)


async def test_list_available_tools(make_client: ClientFactory) -> None:
    agent = await make_client("agent")
    tools = {t["name"]: t for t in (await agent.get("/agents/tools")).json()}
    assert set(tools) >= PLAN_TOOLS
    assert tools["create_ticket"]["scope"] == "tickets:write" and tools["create_ticket"]["allowed"] is True
    assert tools["create_ticket"]["input_schema"]["properties"]["subject"]["maxLength"] == 300
    assert "subject" in tools["create_ticket"]["input_schema"]["required"]
    openai = (await agent.get("/agents/tools/openai")).json()
    assert {t["type"] for t in openai} == {"function"}
    assert {t["function"]["name"] for t in openai} == {n for n, t in tools.items() if t["allowed"]}
    support = await make_client("support_agent")
    assert (await support.get("/agents/tools")).status_code == 403  # no agents:read


async def test_execute_create_ticket_tool(session: AsyncSession, make_client: ClientFactory,
                                          org: Organisation) -> None:
    agent = await make_client("agent")
    patient = await make_patient(session, org)
    r = await _run(agent, "create_ticket", {"subject": "Patient asks for a call back", "patient_id": str(patient.id)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "succeeded" and body["output"]["subject"] == "Patient asks for a call back"
    ticket = await session.get(Ticket, uuid.UUID(body["output"]["id"]))
    assert ticket is not None and ticket.org_id == org.id and ticket.source == "agent"
    assert ticket.patient_id == patient.id


async def test_execute_confirm_appointment_tool(session: AsyncSession, make_client: ClientFactory,
                                                org: Organisation) -> None:
    with clock.frozen(NOW):
        clinic = await build_clinic(session, org.id)
        patient = await make_patient(session, org)
        agent = await make_client("agent")
        slots = await _run(agent, "find_slots", {"service_id": str(clinic.cleaning.id), "start_date": "2026-03-24",
                                                 "practitioner_id": str(clinic.vega.id), "limit": 3})
        assert slots.status_code == 200 and slots.json()["output"]["slots"][0]["start_at"]
        booked = await _run(agent, "book_appointment", {
            "patient_id": str(patient.id), "practitioner_id": str(clinic.vega.id),
            "service_id": str(clinic.cleaning.id), "start_at": at_local(24, 10).isoformat()})
        assert booked.status_code == 200, booked.text
        appointment_id = booked.json()["output"]["id"]
        r = await _run(agent, "confirm_appointment", {"appointment_id": appointment_id})
        again = await _run(agent, "confirm_appointment", {"appointment_id": appointment_id})
    assert r.status_code == 200 and r.json()["output"]["status"] == "confirmed"
    row = await session.get(Appointment, uuid.UUID(appointment_id))
    assert row is not None and row.status == "confirmed"
    assert again.status_code == 409 and again.json()["code"] and again.json()["run_id"]  # lists allowed transitions
    # the patient is on the run even though only the result named them: the patient's agent history
    of_patient = (await agent.get("/agents/runs", params={"patient_id": str(patient.id)})).json()
    assert {i["tool"] for i in of_patient["items"]} == {"book_appointment", "confirm_appointment"}


async def test_execute_send_notification_tool(session: AsyncSession, make_client: ClientFactory,
                                              org: Organisation) -> None:
    admin = await make_client("admin")
    r = await admin.post("/notifications/templates", json={
        "key": "call_back", "channel": "sms", "body": "Hello, we will call you today about {{ topic }}.",
        "variables": ["topic"]})
    assert r.status_code == 201, r.text
    patient = await make_patient(session, org, phone="+34600111222")
    agent = await make_client("agent")
    r = await _run(agent, "send_notification", {"patient_id": str(patient.id), "template_key": "call_back",
                                                "channel": "sms", "variables": {"topic": "your results"}})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["channel"] == "sms" and r.json()["output"]["status"] in ("queued", "scheduled")
    # WhatsApp outside the 24-hour window is refused by the same rule as the API; nothing is sent
    r = await _run(agent, "send_notification", {"patient_id": str(patient.id), "template_key": "call_back",
                                                "channel": "whatsapp", "variables": {"topic": "x"}})
    assert r.status_code in (409, 422) and r.json()["run_id"]
    # a model's arguments are bounded like any input: 1 000 characters a variable
    r = await _run(agent, "send_notification", {"patient_id": str(patient.id), "template_key": "call_back",
                                                "channel": "sms", "variables": {"topic": "x" * 1001}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("variables.topic")


async def test_execute_update_patient_tool(session: AsyncSession, make_client: ClientFactory,
                                           org: Organisation) -> None:
    patient = await make_patient(session, org, phone="+34600111222")
    agent = await make_client("agent")
    r = await _run(agent, "update_patient", {"patient_id": str(patient.id), "preferred_language": "es",
                                             "preferred_channel": "whatsapp"})
    assert r.status_code == 200, r.text
    assert r.json()["output"]["preferred_language"] == "es"
    row = await session.get(Patient, patient.id)
    assert row is not None
    await session.refresh(row)
    assert row.preferred_channel == "whatsapp"
    # identity fields are not an agent's to change
    r = await _run(agent, "update_patient", {"patient_id": str(patient.id), "given_name": "Mallory"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "given_name"


async def test_tool_execution_logging(session: AsyncSession, make_client: ClientFactory, org: Organisation) -> None:
    agent = await make_client("agent")
    patient = await make_patient(session, org, given_name="Lucía")
    await _run(agent, "create_ticket", {"subject": "Lucía called about her results", "patient_id": str(patient.id)})
    await _run(agent, "create_ticket", {"subject": ""})  # invalid
    support = await make_client("integration")  # lacks nothing for tickets; use a narrower role below
    practitioner = await make_client("practitioner")  # no agents:write → refused before any tool
    assert (await _run(practitioner, "create_ticket", {"subject": "x"})).status_code == 403
    runs = (await agent.get("/agents/runs")).json()
    assert runs["total"] == 2
    ok, invalid = sorted(runs["items"], key=lambda r: r["status"], reverse=True)
    assert ok["status"] == "succeeded" and ok["tool"] == "create_ticket" and ok["credential"].startswith("api_key:")
    assert ok["input"]["subject"] == "[redacted]" and ok["input"]["patient_id"] == str(patient.id)
    assert ok["output_summary"]["id"] and ok["patient_id"] == str(patient.id) and ok["duration_ms"] >= 0
    stored = await session.get(ToolRun, uuid.UUID(ok["id"]))
    assert stored is not None and stored.output is None  # no idempotency key: nothing to replay, no copy kept
    assert invalid["status"] == "invalid" and invalid["error_status"] == 422
    only_ok = (await agent.get("/agents/runs", params={"status": "succeeded"})).json()
    assert only_ok["total"] == 1
    one = (await agent.get(f"/agents/runs/{ok['id']}")).json()
    assert one["id"] == ok["id"]
    assert (await support.get(f"/agents/runs/{uuid.uuid4()}")).status_code == 404


async def test_tool_execution_failure(session: AsyncSession, make_client: ClientFactory, org: Organisation,
                                      other_org: Organisation) -> None:
    agent = await make_client("agent")
    before = await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id))
    # another organisation's patient is not found through a tool either, and nothing is written
    foreign = await make_patient(session, other_org)
    r = await _run(agent, "create_ticket", {"subject": "Call back", "patient_id": str(foreign.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
    r = await _run(agent, "get_patient", {"patient_id": str(foreign.id)})
    assert r.status_code == 404
    after = await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id))
    assert after == before
    failed = (await session.scalars(select(ToolRun).where(ToolRun.org_id == org.id, ToolRun.status == "failed"))).all()
    assert {f.tool for f in failed} == {"create_ticket", "get_patient"}
    assert {f.error_status for f in failed} == {422, 404}
    # a scope the agent role lacks: denied, recorded
    limited = await make_client("support_agent")
    r = await _run(limited, "create_ticket", {"subject": "x"})
    assert r.status_code == 403


async def test_tool_outside_the_credentials_scopes_is_denied_and_recorded(
        session: AsyncSession, app: Any, make_client: ClientFactory, org: Organisation) -> None:
    from prm.core.auth import Principal
    from prm.identity.scopes import scopes_for

    narrow = Principal(org_id=org.id, kind="api_key", subject_id=uuid.uuid4(), role="agent",
                       scopes=frozenset(scopes_for("agent") - {"tickets:write"}))
    from prm.agents import execution

    outcome = await execution.execute(session, narrow, "create_ticket", {"subject": "x"}, settings=app.state.settings)
    assert outcome.status_code == 403 and outcome.run.status == "denied"
    assert outcome.problem is not None and outcome.problem["code"] == "missing_scope"
    assert await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id)) == 0


async def test_birth_dates_are_redacted_in_the_tool_run(session: AsyncSession, make_client: ClientFactory,
                                                        org: Organisation) -> None:
    """Ids and appointment dates stay readable in the audit; a birth date identifies a person."""
    agent = await make_client("agent")
    r = await _run(agent, "search_patients", {"birth_date": "1980-02-03", "limit": 5})
    assert r.status_code == 200, r.text
    run = (await agent.get(f"/agents/runs/{r.json()['run_id']}")).json()
    assert run["input"] == {"birth_date": "[redacted]", "limit": 5}


async def test_search_patients_tool_says_when_the_total_is_capped(
        session: AsyncSession, make_client: ClientFactory, org: Organisation, monkeypatch: Any) -> None:
    """A one-word name search stops counting after TOTAL_COUNTED matches: the agent is told the total
    is a floor (`total_exact` false), as the API's `GET /patients` says, instead of a wrong count."""
    from prm.patients import search

    for given in ["Ana", "Berta", "Carla", "Dora"]:
        await make_patient(session, org, given_name=given, family_name="Garcia")
    await make_patient(session, org, given_name="Elena", family_name="Serrano")
    monkeypatch.setattr(search, "TOTAL_COUNTED", 2)
    agent = await make_client("agent")
    capped = await _run(agent, "search_patients", {"q": "garcia", "limit": 2})
    assert capped.status_code == 200, capped.text
    out = capped.json()["output"]
    assert (len(out["patients"]), out["total"], out["total_exact"]) == (2, 2, False)  # "more than 2"
    exact = (await _run(agent, "search_patients", {"q": "serrano"})).json()["output"]
    assert ([p["given_name"] for p in exact["patients"]], exact["total"], exact["total_exact"]) == (["Elena"], 1, True)
    api = (await agent.get("/patients", params={"q": "garcia", "limit": 2})).json()
    assert (api["total"], api["total_exact"]) == (out["total"], out["total_exact"])


async def test_invalid_tool_name(make_client: ClientFactory) -> None:
    agent = await make_client("agent")
    r = await _run(agent, "make_any_request", {"url": "http://169.254.169.254/"})
    assert r.status_code == 404 and r.json()["code"] == "unknown_tool"
    # recorded: an agent probing for a generic request tool is worth seeing
    run = (await agent.get(f"/agents/runs/{r.json()['run_id']}")).json()
    assert (run["tool"], run["status"], run["error_code"]) == ("make_any_request", "invalid", "unknown_tool")
    r = await _run(agent, "x" * 300, {})
    assert r.status_code == 404 and (await agent.get(f"/agents/runs/{r.json()['run_id']}")).json()["tool"] == "x" * 64


async def test_same_idempotency_key_executes_once(session: AsyncSession, make_client: ClientFactory,
                                                  org: Organisation) -> None:
    agent = await make_client("agent")
    body = {"subject": "Send the invoice again"}
    first = await _run(agent, "create_ticket", body, **{"Idempotency-Key": "agent-call-1"})
    second = await _run(agent, "create_ticket", body, **{"Idempotency-Key": "agent-call-1"})
    assert first.status_code == second.status_code == 200
    assert first.json()["output"]["id"] == second.json()["output"]["id"]
    assert await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id)) == 1


async def test_idempotency_at_the_executor(session: AsyncSession, app: Any, org: Organisation) -> None:
    from prm.agents import execution

    who = principal(org, role="agent")
    a = await execution.execute(session, who, "create_ticket", {"subject": "Once"}, settings=app.state.settings,
                                idempotency_key="k1")
    b = await execution.execute(session, who, "create_ticket", {"subject": "Once"}, settings=app.state.settings,
                                idempotency_key="k1")
    assert a.run.id == b.run.id and a.output == b.output and a.run.output == a.output
    assert await session.scalar(select(func.count()).select_from(Ticket).where(Ticket.org_id == org.id)) == 1
    try:
        await execution.execute(session, who, "create_ticket", {"subject": "Other"}, settings=app.state.settings,
                                idempotency_key="k1")
    except Exception as exc:
        assert getattr(exc, "code", None) == "idempotency_key_reused"
    else:
        raise AssertionError("a reused key with another input must be refused")
