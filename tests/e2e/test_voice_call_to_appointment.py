"""The plan's second end-to-end flow, against the service as a process (`prm serve`: API and worker) on a
PostgreSQL this test starts, with a real SMTP sink for email.

A patient calls the clinic; the voice agent (this test, playing a Retell agent) looks up open slots
through the booking tool (`find_slots`, with the agent's API key), the caller confirms one, and at the
end of the call the agent sends its signed `call_analyzed` webhook with the transcript and the
extracted data. The service answers at once and then, in its worker: creates the intake session with
the symptoms and medications, links the caller with their consent, books the confirmed slot, sends
the SMS confirmation (sandbox outbox) and emails the calendar invite (the SMTP sink), and submits the
intake with its summary. The audit trail shows every step. Before that, a forged delivery changes
nothing; afterwards, the same webhook delivered five times at once adds nothing.
"""

from __future__ import annotations

import asyncio
import email
import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from icalendar import Calendar

from prm.core import embedded
from tests.e2e.processes import free_port, until

pytestmark = pytest.mark.slow

VOICE_KEY = "e2e-retell-key-0123456789abcdef"
CALLER = "+34611987654"


class Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted"


@dataclass
class Running:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    sink: Sink


@pytest.fixture
def running() -> Iterator[Running]:
    workdir = Path(tempfile.mkdtemp(prefix="prm-e2e-voice-"))
    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    db_url = embedded.start(workdir / "pg", throwaway=True)
    port, log = free_port(), workdir / "serve.log"
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SECRET_KEY"}}
    env.update(DATABASE_URL=db_url, PRM_DATA_DIR=str(workdir / "data"), LOG_LEVEL="INFO", LOG_JSON="true",
               ENVIRONMENT="development", PUBLIC_BASE_URL=base, MESSAGING_PROVIDER_EMAIL="smtp",
               SMTP_HOST="127.0.0.1", SMTP_PORT=str(smtp_port), SMTP_STARTTLS="false",
               SMTP_FROM="Demo Clinic <clinic@demo-clinic.example>")
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve", "--port", str(port)], env=env,
                            cwd=workdir, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield Running(base, proc, log, sink)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        controller.stop()
        embedded.stop(workdir / "pg")
        output = log.read_text()
        shutil.rmtree(workdir, ignore_errors=True)
    assert code == 0, output[-3000:]



def _retell(event: str, call: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """Signed as Retell signs: HMAC-SHA256(key, raw body + unix ms), `v=<ms>,d=<hex>`."""
    body = json.dumps({"event": event, "call": call}).encode()
    stamp = str(int(time.time() * 1000))
    digest = hmac.new(VOICE_KEY.encode(), body + stamp.encode(), hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-retell-signature": f"v={stamp},d={digest}"}


async def test_voice_call_to_appointment(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.base, timeout=15) as anon:

        async def ready() -> bool:
            assert running.proc.poll() is None, "server exited early:\n" + running.log.read_text()[-4000:]
            try:
                return (await anon.get("/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, "the service to be ready", within=120)
        login = await anon.post("/auth/token", data={"username": "admin@demo-clinic.example",
                                                     "password": "demo-password-123"})
        assert login.status_code == 200, login.text
        admin = httpx.AsyncClient(base_url=running.base, timeout=15,
                                  headers={"Authorization": f"Bearer {login.json()['access_token']}"})
        try:
            await _flow(admin, anon, running)
        finally:
            await admin.aclose()
    problems = [line for line in running.log.read_text().splitlines()
                if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line]
    assert problems == [], "\n".join(problems[:5])


async def _flow(admin: httpx.AsyncClient, anon: httpx.AsyncClient, running: Running) -> None:
    async def ok(response: Awaitable[httpx.Response], status: int = 200) -> Any:
        r = await response
        assert r.status_code == status, r.text
        return r.json()

    org = await ok(admin.get("/admin/organisation"))
    await ok(admin.put("/communications/channels/voice", json={"webhook_secret": VOICE_KEY}))
    # the demo clinic's email goes to the sandbox: this one sends through SMTP (to the sink)
    await ok(admin.put("/communications/channels/email", json={
        "provider": "smtp", "sender": "hello@demo-clinic.example", "sender_name": "Demo Clinic"}))
    # a GP service open around the clock (UTC), so the test can book whatever the hour
    location = await ok(admin.post("/locations", json={"name": "Walk-in centre", "timezone": "UTC"}), 201)
    gp = await ok(admin.post("/practitioners", json={"name": "Dr Adams", "timezone": "UTC"}), 201)
    for weekday in range(7):
        await ok(admin.post(f"/practitioners/{gp['id']}/availability/rules", json={
            "location_id": location["id"], "weekday": weekday, "start_time": "00:00", "end_time": "23:45"}), 201)
    service = await ok(admin.post("/services", json={
        "name": "GP consultation", "duration_minutes": 15, "min_notice_minutes": 120, "slot_step_minutes": 15,
        "practitioner_ids": [gp["id"]]}), 201)
    agent_key = (await ok(admin.post("/admin/api-keys", json={"name": "Front-desk voice agent", "role": "agent"}),
                          201))["key"]
    agent = httpx.AsyncClient(base_url=running.base, timeout=15, headers={"Authorization": f"Bearer {agent_key}"})

    # during the call: the agent's booking tool suggests slots, the caller takes the second one
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    found = await ok(agent.post("/agents/tools/find_slots/execute", json={"service_id": service["id"],
                                                                          "start_date": tomorrow, "limit": 3}))
    await agent.aclose()
    slot = found["output"]["slots"][1]
    now_ms = int(time.time() * 1000)
    call = {
        "call_id": "call_e2e_1", "agent_id": "agent_front_desk", "call_status": "ended",
        "from_number": CALLER, "to_number": "+15005550006",
        "start_timestamp": now_ms - 300_000, "end_timestamp": now_ms - 20_000,
        "transcript": "Agent: Demo Clinic, how can I help?\nUser: I've had a sore throat and a fever for two "
                      "days.\nAgent: Are you taking anything?\nUser: Ibuprofen, 400 milligrams.\n"
                      f"Agent: I can offer {slot['local_start']}.\nUser: Yes, please book it.",
        "call_analysis": {"custom_analysis_data": {
            "given_name": "Jordan", "family_name": "Blake", "birth_date": "1990-06-15",
            "email": "jordan.blake@example.org", "consent": True,
            "chief_complaint": "Sore throat and fever for two days",
            "symptoms": [{"name": "sore throat", "severity": "moderate", "duration_days": 2},
                         {"name": "fever", "severity": "mild", "duration_days": 2}],
            "medications": [{"name": "Ibuprofen", "dose": "400 mg", "frequency": "as needed"}],
            "booking": {"service_id": service["id"], "practitioner_id": gp["id"], "start_at": slot["start_at"],
                        "confirmed": True}}},
    }
    body, headers = _retell("call_analyzed", call)
    webhook = f"/webhooks/voice-agent/{org['id']}/retell"

    # a forged delivery changes nothing
    forged = await anon.post(webhook, content=body.replace(b"Ibuprofen", b"Morphine!"), headers=headers)
    assert forged.status_code == 403
    assert (await ok(admin.get("/intake/sessions", params={"source": "voice"})))["total"] == 0

    # the real one: answered at once, processed by the worker
    ack = await ok(anon.post(webhook, content=body, headers=headers))
    assert ack["status"] == "processed"

    async def submitted() -> Any:
        items = (await ok(admin.get("/intake/sessions", params={"source": "voice"})))["items"]
        return items[0] if items and items[0]["status"] == "submitted" else None

    session = await until(submitted, "the submitted intake")
    assert session["link_status"] == "linked" and session["appointment_id"]
    detail = await ok(admin.get(f"/intake/sessions/{session['id']}"))
    kinds = sorted((r["type"], r["data"].get("name") or r["data"].get("text")) for r in detail["records"])
    assert kinds == [("chief_complaint", "Sore throat and fever for two days"), ("medication", "Ibuprofen"),
                     ("symptom", "fever"), ("symptom", "sore throat")]
    patient = await ok(admin.get(f"/patients/{session['patient_id']}"))
    assert (patient["given_name"], patient["family_name"]) == ("Jordan", "Blake")
    appointment = await ok(admin.get(f"/appointments/{session['appointment_id']}"))
    assert (appointment["start_at"], appointment["status"], appointment["source"]) == (
        slot["start_at"].replace("+00:00", "Z"), "booked", "phone")

    # the SMS confirmation (sandbox provider) and the calendar invite (the SMTP sink)
    async def sent(channel: str) -> list[dict[str, Any]]:
        page = await ok(admin.get("/communications", params={"patient_id": patient["id"], "channel": channel,
                                                             "direction": "outbound"}))
        return [m for m in page["items"] if m["status"] in ("sent", "delivered")]

    async def confirmations() -> list[dict[str, Any]]:
        # the demo clinic's new-patient journey also texts a new patient (welcome, visit notes): only
        # the booking confirmation counts here, and exactly one of it
        return [m for m in await sent("sms") if m["body"].startswith("Your appointment is booked")]

    [sms] = await until(confirmations, "the SMS confirmation")
    assert sms["to_address"] == CALLER and "GP consultation" in sms["body"]
    def to_caller() -> list[Message]:  # (patients, the caller too, also get the journeys' messages)
        return [m for m in running.sink.messages
                if m["To"] == "jordan.blake@example.org" and m["Subject"] == "Your appointment"]

    await until(lambda: _async(to_caller()), "the email")
    [mail] = to_caller()
    [invite] = [p for p in mail.walk() if p.get_filename() == "appointment.ics"]
    vevent = next(c for c in Calendar.from_ical(invite.get_payload(decode=True)).walk() if c.name == "VEVENT")
    assert vevent.decoded("dtstart") == datetime.fromisoformat(slot["start_at"].replace("Z", "+00:00"))

    # the summary, machine-generated by the offline summariser
    summary = await until(lambda: _summary(admin, session["id"]), "the summary")
    assert summary["machine_generated"] and "Ibuprofen 400 mg as needed" in summary["content"]["medications"]

    # the audit trail shows every step
    audit = await ok(admin.get("/admin/audit", params={"patient_id": patient["id"], "limit": 200}))
    steps = {(e["resource_type"], e["action"]) for e in audit["items"]}
    for step in [("patient", "consent"), ("intake_session", "link"), ("appointment", "create"),
                 ("communication", "create"), ("intake_session", "submit"), ("intake_session", "summarise")]:
        assert step in steps, (step, sorted(steps))

    # the same delivery five times at once: nothing new
    again = await asyncio.gather(*(anon.post(webhook, content=body, headers=headers) for _ in range(5)))
    assert [r.json()["status"] for r in again] == ["duplicate"] * 5
    await asyncio.sleep(1)
    assert (await ok(admin.get("/intake/sessions", params={"source": "voice"})))["total"] == 1
    booked = await ok(admin.get("/appointments", params={"patient_id": patient["id"]}))
    assert booked["total"] == 1
    assert len(to_caller()) == 1


async def _async(value: Any) -> Any:
    return value


async def _summary(admin: httpx.AsyncClient, session_id: str) -> Any:
    r = await admin.get(f"/intake/sessions/{session_id}/summary")
    return r.json() if r.status_code == 200 else None
