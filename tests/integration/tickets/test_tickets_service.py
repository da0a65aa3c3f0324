"""Tickets end to end: API, rules, ETag / If-Match, auto-assignment, SLA job, events, patient links."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from prm.core import clock, jobs
from prm.core.audit import AuditEntry
from prm.core.events import EventRecord
from prm.patients.registry import merge_handlers, timeline_sources
from prm.tickets import service
from prm.tickets.models import Ticket
from tests.fixtures.factories import make_patient, make_user

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


async def _events(session, org_id, type_: str) -> list[dict]:
    rows = await session.scalars(
        select(EventRecord)
        .where(EventRecord.org_id == org_id, EventRecord.type == type_)
        .order_by(EventRecord.occurred_at)
    )
    return [r.payload for r in rows]


async def test_create_ticket(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org)
    with clock.frozen(T0):
        r = await client.post(
            "/tickets",
            json={
                "subject": "Question about my invoice",
                "description": "I was charged twice",
                "category": "Billing",
                "patient_id": str(patient.id),
                "tags": ["invoice", "Invoice", "refund"],
                "auto_assign": False,
            },
        )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "open" and body["priority"] == "normal" and body["category"] == "billing"
    assert body["tags"] == ["invoice", "refund"]
    assert body["due_at"] == "2026-11-26T09:00:00Z"  # normal priority: 24 h SLA
    assert body["assignee_id"] is None and body["version"] == 1
    assert r.headers["ETag"] == '"1"' and r.headers["Location"] == f"/tickets/{body['id']}"
    stored = await session.get(Ticket, uuid.UUID(body["id"]))
    assert stored is not None and stored.patient_id == patient.id and stored.source == "api"
    created = await _events(session, org.id, "ticket.created")
    assert created[-1]["ticket_id"] == body["id"] and created[-1]["patient_id"] == str(patient.id)
    audited = await session.scalar(
        select(AuditEntry).where(AuditEntry.resource_id == body["id"], AuditEntry.action == "create")
    )
    assert audited is not None and audited.patient_id == patient.id


async def test_create_ticket_rejects_bad_input(session, org, other_org, client: httpx.AsyncClient) -> None:
    foreign = await make_patient(session, other_org)
    r = await client.post("/tickets", json={"subject": "x", "patient_id": str(foreign.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
    r = await client.post("/tickets", json={"subject": "x", "assignee_id": str(uuid.uuid4())})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "assignee_id"
    r = await client.post("/tickets", json={"subject": "", "priority": "critical"})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"subject", "priority"}
    assert (await session.scalar(select(Ticket.id).where(Ticket.org_id == org.id))) is None  # nothing written


async def test_list_tickets_with_filters(session, org, other_org, client: httpx.AsyncClient) -> None:
    agent = await make_user(session, org, role="support_agent")
    patient = await make_patient(session, org)
    with clock.frozen(T0) as c:

        async def create(**body) -> dict:
            r = await client.post("/tickets", json={"auto_assign": False, **body})
            assert r.status_code == 201, r.text
            return r.json()

        refund = await create(
            subject="Refund for cancelled visit",
            category="billing",
            priority="low",
            patient_id=str(patient.id),
            tags=["refund"],
        )
        form = await create(
            subject="Insurance form",
            description="Needs the reimbursement form signed",
            category="billing",
            assignee_id=str(agent.id),
        )
        late = await create(subject="Lab results missing", category="clinical", priority="high")
        await client.post(f"/tickets/{form['id']}/status", json={"status": "resolved"})
        await service.create(
            session,
            _system(other_org),
            service.TicketCreate(subject="Refund elsewhere"),
        )
        c.advance(timedelta(hours=5))  # the high-priority one (4 h SLA) is now overdue

        async def ids(**params) -> list[str]:
            r = await client.get("/tickets", params=params)
            assert r.status_code == 200, r.text
            return [t["id"] for t in r.json()["items"]]

        assert await ids() == [late["id"], form["id"], refund["id"]]  # priority order; other org invisible
        assert await ids(status=["open"]) == [late["id"], refund["id"]]
        assert await ids(status=["open", "resolved"], category="billing") == [form["id"], refund["id"]]
        assert await ids(priority="low") == [refund["id"]]
        assert await ids(assignee_id=str(agent.id)) == [form["id"]]
        assert await ids(unassigned="true") == [late["id"], refund["id"]]
        assert await ids(patient_id=str(patient.id)) == [refund["id"]]
        assert await ids(tag="refund") == [refund["id"]]
        assert await ids(overdue="true") == [late["id"]]
        assert await ids(q="refund") == [refund["id"]]  # subject word
        assert await ids(q="reimbursement") == [form["id"]]  # description word (full-text)
        assert await ids(q="lab res") == [late["id"]]  # subject substring
        page = (await client.get("/tickets", params={"limit": 2, "offset": 1})).json()
        assert page["total"] == 3 and [t["id"] for t in page["items"]] == [form["id"], refund["id"]]
        assert (await client.get("/tickets", params={"status": "nope"})).status_code == 422


async def test_get_ticket_by_id(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org)
    created = (
        await client.post(
            "/tickets", json={"subject": "Call me back", "patient_id": str(patient.id), "auto_assign": False}
        )
    ).json()
    r = await client.get(f"/tickets/{created['id']}")
    assert r.status_code == 200
    assert r.json()["subject"] == "Call me back" and r.json()["patient_id"] == str(patient.id)
    assert r.headers["ETag"] == '"1"'
    reads = await session.scalars(
        select(AuditEntry).where(AuditEntry.resource_id == created["id"], AuditEntry.action == "read")
    )
    assert [a.patient_id for a in reads] == [patient.id]


async def test_ticket_not_found(session, org, other_org, client: httpx.AsyncClient) -> None:
    missing = uuid.uuid4()
    for method, path, body in [
        ("GET", f"/tickets/{missing}", None),
        ("PATCH", f"/tickets/{missing}", {"subject": "x"}),
        ("POST", f"/tickets/{missing}/status", {"status": "closed"}),
        ("POST", f"/tickets/{missing}/assign", {"auto": True}),
        ("GET", f"/tickets/{missing}/comments", None),
    ]:
        r = await client.request(method, path, json=body)
        assert r.status_code == 404, (method, path)
        assert r.json()["code"] == "ticket_not_found"
    theirs = await service.create(
        session,
        _system(other_org),
        service.TicketCreate(subject="Theirs"),
    )
    assert (await client.get(f"/tickets/{theirs.id}")).status_code == 404  # another org's ticket: not found


async def test_update_ticket_status(session, org, client: httpx.AsyncClient) -> None:
    t = (await client.post("/tickets", json={"subject": "Prescription renewal", "auto_assign": False})).json()
    path = f"/tickets/{t['id']}/status"
    with clock.frozen(T0 + timedelta(minutes=59)) as c:
        r = await client.post(path, json={"status": "in_progress"})
        assert r.status_code == 200 and r.json()["status"] == "in_progress" and r.headers["ETag"] == '"2"'
        c.advance(timedelta(minutes=1))  # distinct event times, so their order is defined
        r = await client.post(path, json={"status": "resolved", "comment": "Sent to pharmacy"})
        assert r.json()["status"] == "resolved" and r.json()["resolved_at"] == "2026-11-25T10:00:00Z"
    r = await client.post(path, json={"status": "open"})  # reopen
    assert r.json()["status"] == "open" and r.json()["resolved_at"] is None
    await client.post(path, json={"status": "closed"})
    r = await client.post(path, json={"status": "open"})
    assert r.status_code == 409
    assert r.json()["code"] == "invalid_transition" and r.json()["allowed"] == []
    assert (await client.post(path, json={"status": "archived"})).status_code == 422
    changes = await _events(session, org.id, "ticket.status_changed")
    assert [(e["from"], e["to"]) for e in changes] == [
        ("open", "in_progress"),
        ("in_progress", "resolved"),
        ("resolved", "open"),
        ("open", "closed"),
    ]
    notes = (await client.get(f"/tickets/{t['id']}/comments")).json()
    assert [(n["body"], n["internal"]) for n in notes] == [("Sent to pharmacy", True)]
    assert (await client.patch(f"/tickets/{t['id']}", json={"subject": "late edit"})).status_code == 409


async def test_assign_ticket(session, org, client: httpx.AsyncClient) -> None:
    agent = await make_user(session, org, role="support_agent")
    inactive = await make_user(session, org, role="support_agent")
    inactive.is_active = False
    await session.flush()
    t = (await client.post("/tickets", json={"subject": "Needs a person", "auto_assign": False})).json()
    path = f"/tickets/{t['id']}/assign"
    r = await client.post(path, json={"assignee_id": str(agent.id)}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.json()["assignee_id"] == str(agent.id) and r.headers["ETag"] == '"2"'
    r = await client.post(path, json={"assignee_id": str(inactive.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "assignee_id"
    r = await client.post(path, json={"assignee_id": None})  # unassign
    assert r.status_code == 200 and r.json()["assignee_id"] is None
    assigned = await _events(session, org.id, "ticket.assigned")
    assert [(e["assignee_id"], e["previous_assignee_id"]) for e in assigned] == [
        (str(agent.id), None),
        (None, str(agent.id)),
    ]
    mine = (await client.get("/tickets", params={"assignee_id": str(agent.id)})).json()
    assert mine["total"] == 0


async def test_ticket_priority_handling(session, org, client: httpx.AsyncClient) -> None:
    with clock.frozen(T0):
        r = await client.post(
            "/tickets",
            json={
                "subject": "Patient called",
                "priority": "low",
                "auto_assign": False,
                "description": "Reports CHEST PAIN since this morning",
            },
        )
        urgent = r.json()
        assert urgent["priority"] == "urgent" and urgent["urgent_keywords"] == ["chest pain"]
        assert urgent["due_at"] == "2026-11-25T10:00:00Z"  # 1 h SLA
        high = (
            await client.post("/tickets", json={"subject": "Form", "priority": "high", "auto_assign": False})
        ).json()
        assert high["priority"] == "high" and high["due_at"] == "2026-11-25T13:00:00Z"
        # editing the text re-applies the keywords; changing priority recomputes the due time
        r = await client.patch(f"/tickets/{high['id']}", json={"description": "now there is bleeding"})
        assert r.json()["priority"] == "urgent" and r.json()["due_at"] == "2026-11-25T10:00:00Z"
        r = await client.patch(
            f"/tickets/{urgent['id']}", json={"description": "follow-up only", "priority": "low"}
        )
        assert r.json()["priority"] == "low" and r.json()["due_at"] == "2026-11-28T09:00:00Z"
        assert r.json()["urgent_keywords"] == []
        assert (await client.patch(f"/tickets/{urgent['id']}", json={"priority": None})).status_code == 422
    listed = (await client.get("/tickets")).json()["items"]
    assert [t["priority"] for t in listed] == ["urgent", "low"]  # urgent first


async def test_auto_assignment_logic(session, org, client: httpx.AsyncClient) -> None:
    a1 = await make_user(session, org, role="support_agent")
    a2 = await make_user(session, org, role="coordinator")
    await make_user(session, org, role="practitioner")  # not eligible
    first, second = sorted([a1, a2], key=lambda u: str(u.id))

    async def new(category: str = "billing") -> dict:
        r = await client.post("/tickets", json={"subject": "help", "category": category})
        assert r.status_code == 201
        return r.json()

    t1, t2, t3 = await new(), await new(), await new()
    # equal workloads rotate: first, second, first
    assert [t["assignee_id"] for t in (t1, t2, t3)] == [str(first.id), str(second.id), str(first.id)]
    # workload is counted per category and only for open tickets
    await client.post(f"/tickets/{t1['id']}/status", json={"status": "resolved"})
    await client.post(f"/tickets/{t3['id']}/status", json={"status": "closed"})
    t4 = await new()  # first has 0 open, second has 1 → first
    assert t4["assignee_id"] == str(first.id)
    other = await new("clinical")  # a fresh category: no workload there, round robin starts over
    assert other["assignee_id"] == str(first.id)
    # reassign by rule: second has 1 open billing ticket, first has t4 (excluded: it is the one moving)
    r = await client.post(f"/tickets/{t4['id']}/assign", json={"auto": True})
    assert r.json()["assignee_id"] == str(first.id)
    assert (await _events(session, org.id, "ticket.assigned"))[-1]["auto"] is True


async def test_no_eligible_staff_leaves_ticket_unassigned(session, org, client: httpx.AsyncClient) -> None:
    r = await client.post("/tickets", json={"subject": "nobody here"})
    assert r.status_code == 201 and r.json()["assignee_id"] is None


async def test_etag_if_match_rejects_stale_writes(session, org, client: httpx.AsyncClient) -> None:
    t = (await client.post("/tickets", json={"subject": "Original", "auto_assign": False})).json()
    r = await client.patch(f"/tickets/{t['id']}", json={"subject": "First edit"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200 and r.headers["ETag"] == '"2"'
    r = await client.patch(
        f"/tickets/{t['id']}", json={"subject": "Stale edit"}, headers={"If-Match": 'W/"1"'}
    )
    assert r.status_code == 412
    assert r.json()["code"] == "stale_version" and r.json()["current_version"] == 2
    r = await client.post(
        f"/tickets/{t['id']}/status", json={"status": "closed"}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 412
    assert (
        await client.patch(f"/tickets/{t['id']}", json={"tags": ["x"]}, headers={"If-Match": "abc"})
    ).status_code == 422
    r = await client.patch(f"/tickets/{t['id']}", json={"tags": ["x"]}, headers={"If-Match": "*"})
    assert r.status_code == 200
    got = await client.get(f"/tickets/{t['id']}")
    assert got.json()["subject"] == "First edit" and got.headers["ETag"] == '"3"'


@pytest.mark.slow
async def test_concurrent_updates(committed) -> None:
    """Real concurrent transactions: with one If-Match exactly one writer wins, the rest get 412;
    without it every update lands (serialised by the row lock, the version counts each one)."""
    _, key = await committed.org()
    api = committed.client(key)
    t = (await api.post("/tickets", json={"subject": "Contended", "auto_assign": False})).json()
    etag = (await api.get(f"/tickets/{t['id']}")).headers["ETag"]

    results = await asyncio.gather(
        *[
            api.patch(f"/tickets/{t['id']}", json={"subject": f"writer {i}"}, headers={"If-Match": etag})
            for i in range(8)
        ]
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [200] + [412] * 7
    winner = next(r.json()["subject"] for r in results if r.status_code == 200)
    current = await api.get(f"/tickets/{t['id']}")
    assert current.json()["subject"] == winner and current.headers["ETag"] == '"2"'

    results = await asyncio.gather(
        *[
            api.post(f"/tickets/{t['id']}/comments", json={"body": f"note {i}", "internal": True})
            for i in range(6)
        ]
        + [api.patch(f"/tickets/{t['id']}", json={"tags": [f"t{i}"]}) for i in range(6)]
    )
    assert all(r.status_code in (200, 201) for r in results)
    final = (await api.get(f"/tickets/{t['id']}")).json()
    assert final["version"] == 2 + 12  # no update lost
    assert len((await api.get(f"/tickets/{t['id']}/comments")).json()) == 6


async def test_overdue_job_flags_once_and_publishes(session, org, client: httpx.AsyncClient) -> None:
    with clock.frozen(T0) as c:
        urgent = (
            await client.post("/tickets", json={"subject": "bleeding after extraction", "auto_assign": False})
        ).json()
        normal = (await client.post("/tickets", json={"subject": "invoice", "auto_assign": False})).json()
        done = (await client.post("/tickets", json={"subject": "severe pain", "auto_assign": False})).json()
        await client.post(f"/tickets/{done['id']}/status", json={"status": "resolved"})
        c.advance(timedelta(minutes=61))
        assert await service.flag_overdue(session) == 1
        assert await service.flag_overdue(session) == 0  # once
        c.advance(timedelta(days=1))
        await jobs.defer(session, "tickets.flag_overdue", timestamp=0)
        report = await jobs.run_due(session, names=["tickets.flag_overdue"])
        assert report.succeeded
    overdue = await _events(session, org.id, "ticket.overdue")
    assert [e["ticket_id"] for e in overdue] == [urgent["id"], normal["id"]]
    got = (await client.get(f"/tickets/{urgent['id']}")).json()
    assert got["overdue_at"] == "2026-11-25T10:01:00Z"
    assert got["version"] == 1  # the system flag does not invalidate clients' ETags


async def test_comments_and_internal_notes(session, org, client: httpx.AsyncClient) -> None:
    t = (await client.post("/tickets", json={"subject": "x", "auto_assign": False})).json()
    r = await client.post(f"/tickets/{t['id']}/comments", json={"body": "We called the patient"})
    assert r.status_code == 201 and r.json()["internal"] is False and r.json()["author_kind"] == "api_key"
    await client.post(f"/tickets/{t['id']}/comments", json={"body": "Staff only", "internal": True})
    assert len((await client.get(f"/tickets/{t['id']}/comments")).json()) == 2
    public = (await client.get(f"/tickets/{t['id']}/comments", params={"internal": "false"})).json()
    assert [c["body"] for c in public] == ["We called the patient"]
    assert (await client.post(f"/tickets/{t['id']}/comments", json={"body": "  "})).status_code == 422


async def test_permissions(session, org, make_client) -> None:
    practitioner = await make_client("practitioner")  # tickets:read+write
    assert (
        await practitioner.post("/tickets", json={"subject": "x", "auto_assign": False})
    ).status_code == 201
    anon = await make_client("anonymous")
    assert (await anon.get("/tickets")).status_code == 401


async def test_merge_and_timeline_hooks(session, org) -> None:
    keep = await make_patient(session, org)
    dup = await make_patient(session, org)
    with clock.frozen(T0):
        ticket = await service.create(
            session,
            _system(org),
            service.TicketCreate(subject="x", patient_id=dup.id),
        )
    assert await merge_handlers()["tickets"](session, org.id, dup.id, keep.id) == 1
    await session.refresh(ticket)
    assert ticket.patient_id == keep.id
    entries = await timeline_sources()["tickets"](session, org.id, keep.id, None, 10)
    assert [(e.kind, e.resource_id) for e in entries] == [("ticket.opened", str(ticket.id))]
    assert await timeline_sources()["tickets"](session, org.id, keep.id, T0, 10) == []


def _system(org):
    from prm.core.auth import Principal

    return Principal.system(org.id)
