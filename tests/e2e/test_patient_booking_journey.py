"""The plan's first end-to-end flow, against the service as a process (`prm serve`: API and worker,
migrated and seeded with the demo clinic and its journeys), on a PostgreSQL this test starts.

A new patient's WhatsApp message "I need to see a doctor" (a signed Twilio webhook) starts a
conversation and the demo `new-patient` journey; the assistant collects the reason, offers slots,
books the chosen one; the confirmation is sent and the journey advances to `booked`; the reminder
is scheduled and — with the clock of a job runner moved to its due time, as `prm jobs run-due`
would run it then — delivered by the service; the appointment is completed, the `post-visit`
follow-up journey starts and `new-patient` finishes (its next-morning wait run at its due time).
No errors in the service's logs.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from twilio.request_validator import RequestValidator

from prm import context, modules
from prm.appointments import service as appointments
from prm.core import clock, embedded, jobs
from prm.core.db import Database
from prm.settings import Settings

pytestmark = pytest.mark.slow

TOKEN = "e2e-twilio-auth-token-" + secrets.token_hex(8)  # a throwaway credential for signing
DEMO_NUMBER = "+15005550006"  # the demo clinic's WhatsApp sender (communications/demo.py)
PATIENT = "+15005550177"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="prm-e2e-journey-"))  # outside pytest's 0700 temp root
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def _until(check: Callable[[], Awaitable[Any]], what: str, within: float = 60) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what} (last replies: {_seen.get('replies')})")


@dataclass
class Service:
    base: str
    db_url: str
    proc: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def running(workdir: Path) -> Iterator[Service]:
    """`prm serve` on a PostgreSQL of this test's own; stopped with Ctrl-C (exit code 0) afterwards."""
    db_url = embedded.start(workdir / "pg", throwaway=True)
    port, log = _free_port(), workdir / "serve.log"
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SECRET_KEY"}}
    env.update(DATABASE_URL=db_url, PRM_DATA_DIR=str(workdir / "data"), LOG_LEVEL="INFO", LOG_JSON="true",
               ENVIRONMENT="development", TWILIO_AUTH_TOKEN=TOKEN, PUBLIC_BASE_URL=base,
               REMINDER_OFFSETS_MINUTES="60")
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve", "--port", str(port)], env=env,
                            cwd=workdir, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield Service(base, db_url, proc, log)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        embedded.stop(workdir / "pg")
    assert code == 0, log.read_text()[-3000:]


async def test_patient_booking_journey(running: Service) -> None:
    modules.load()  # the job runner below knows every job, as the service does
    proc, log, base = running.proc, running.log, running.base
    database = Database.connect(running.db_url)
    # the job runner's sessions carry the same settings as the service's (its context)
    settings = Settings(_env_file=None, environment="development", database_url=running.db_url,  # type: ignore[call-arg]
                        public_base_url=base, twilio_auth_token=TOKEN, reminder_offsets_minutes="60",  # type: ignore[arg-type]
                        prm_data_dir=running.log.parent / "data", log_level="WARNING", seed_demo=False)
    context.bind(database.sessionmaker, context.Context.build(settings))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as anon:

            async def ready() -> bool:
                assert proc.poll() is None, "server exited early:\n" + log.read_text()[-4000:]
                try:
                    return (await anon.get("/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await _until(ready, "the service to be ready", within=120)
            login = await anon.post("/auth/token", data={"username": "admin@demo-clinic.example",
                                                         "password": "demo-password-123"})
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            api = httpx.AsyncClient(base_url=base, timeout=10, headers={"Authorization": f"Bearer {token}"})
            await _flow(api, anon, base, database)
            await api.aclose()
    finally:
        await database.dispose()
    printed = log.read_text()
    problems = [line for line in printed.splitlines()
                if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line]
    assert problems == [], "\n".join(problems[:5])


async def _flow(api: httpx.AsyncClient, anon: httpx.AsyncClient, base: str, database: Database) -> None:
    async def ok(response: Awaitable[httpx.Response], status: int = 200) -> Any:
        r = await response
        assert r.status_code == status, r.text
        return r.json()

    # a GP service open around the clock (UTC), so the test can book whatever the hour
    location = await ok(api.post("/locations", json={"name": "Walk-in centre", "timezone": "UTC"}), 201)
    gp = await ok(api.post("/practitioners", json={"name": "Dr Adams", "timezone": "UTC"}), 201)
    for weekday in range(7):
        await ok(api.post(f"/practitioners/{gp['id']}/availability/rules", json={
            "location_id": location["id"], "weekday": weekday, "start_time": "00:00", "end_time": "23:45"}), 201)
    await ok(api.post("/services", json={
        "name": "GP consultation", "duration_minutes": 15, "keywords": ["doctor", "gp"],
        "min_notice_minutes": 120, "slot_step_minutes": 15, "practitioner_ids": [gp["id"]]}), 201)

    async def says(body: str) -> None:
        params = {"MessageSid": "SM" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32,
                  "From": f"whatsapp:{PATIENT}", "To": f"whatsapp:{DEMO_NUMBER}", "Body": body, "NumMedia": "0"}
        signature = RequestValidator(TOKEN).compute_signature(f"{base}/webhooks/twilio/messaging", params)
        r = await anon.post("/webhooks/twilio/messaging", data=params, headers={"X-Twilio-Signature": signature})
        assert r.status_code == 200, r.text

    async def replies(conversation_id: str) -> list[str]:
        page = await ok(api.get(f"/conversations/{conversation_id}/messages", params={"limit": 200}))
        return [m["body"] for m in reversed(page["items"]) if m["direction"] == "outbound"]

    async def delivered(patient_id: str) -> list[str | None]:
        page = await ok(api.get("/communications", params={"patient_id": patient_id, "direction": "outbound",
                                                           "limit": 200}))
        return [m["template_key"] for m in page["items"] if m["status"] in ("sent", "delivered")]

    # 1-2. the first message: a conversation and the new-patient journey
    await says("I need to see a doctor")

    async def conversation() -> Any:
        patients = (await ok(api.get("/patients", params={"phone": PATIENT})))["items"]
        if not patients:
            return None
        items = (await ok(api.get("/conversations", params={"patient_id": patients[0]["id"]})))["items"]
        return items[0] if items else None

    conv = await _until(conversation, "the conversation")
    patient_id = conv["patient_id"]
    # 3-4. the assistant took the reason from the message and offers GP slots
    offer = await _until(lambda: _last_matching(replies, conv["id"], "These times are open"), "the slot offer")
    assert "GP consultation" in offer

    async def journey_stage(journey_key: str) -> str | None:
        journeys = (await ok(api.get("/journeys", params={"q": journey_key})))["items"]
        instances = (await ok(api.get("/journey-instances", params={"patient_id": patient_id,
                                                                    "journey_id": journeys[0]["id"]})))["items"]
        return instances[0]["current_stage"] if instances else None

    assert await _until(lambda: _is(journey_stage("new-patient"), "booking"), "the journey's booking stage")
    assert "journey_welcome" in await _until(lambda: delivered(patient_id), "the welcome")

    # 5-6. the patient picks the first slot and confirms: booked, confirmed, journey advanced
    await says("1")
    await _until(lambda: _last_matching(replies, conv["id"], "Shall I book it?"), "the booking question")
    await says("Yes")
    booked = await _until(lambda: _first(api, "/appointments", patient_id), "the appointment")
    assert booked["source"] == "whatsapp" and booked["status"] == "booked"
    assert await _until(lambda: _is(journey_stage("new-patient"), "booked"), "the journey's booked stage")
    await _until(lambda: _contains(delivered(patient_id), "appointment_confirmation"), "the confirmation")

    # 7. the reminder is scheduled; 8. with the job runner's clock at its due time, it is delivered
    async with database.sessionmaker() as s:
        due_at = await s.scalar(text("SELECT due_at FROM appointment_reminders WHERE appointment_id = :a "
                                     "AND status = 'scheduled'"), {"a": booked["id"]})
    assert due_at is not None
    with clock.frozen(due_at):
        async with database.sessionmaker() as s:
            fired = await appointments.fire_due_reminders(s)  # the worker's minute sweep, at that time
            await s.commit()
            status = await s.scalar(text("SELECT status FROM appointment_reminders WHERE appointment_id = :a "
                                         "AND due_at = :d"), {"a": booked["id"], "d": due_at})
    assert fired >= 1 and status == "due"
    await _until(lambda: _contains(delivered(patient_id), "appointment_reminder"), "the reminder")

    # 9. the visit happens; 10. the follow-up journey starts, new-patient moves to follow-up
    await ok(api.post(f"/appointments/{booked['id']}/check-in"))
    await ok(api.post(f"/appointments/{booked['id']}/complete"))
    assert await _until(lambda: _is(journey_stage("post-visit"), "follow-up"), "the post-visit journey")
    assert await _until(lambda: _is(journey_stage("new-patient"), "follow-up"), "the follow-up stage")

    # the next-morning wait, run when it is due: feedback asked, the journey completes all stages
    async with database.sessionmaker() as s:
        wait_due = await s.scalar(text(
            "SELECT r.due_at FROM journey_step_runs r JOIN journey_instances i ON i.id = r.instance_id "
            "WHERE i.patient_id = :p AND r.step_id = 'next-morning' AND r.status = 'scheduled'"),
            {"p": patient_id})
    assert wait_due is not None
    with clock.frozen(wait_due):
        async with database.sessionmaker() as s:
            await jobs.run_due(s, names=["journeys.run_step"])
            await s.commit()
    await _until(lambda: _contains(delivered(patient_id), "journey_feedback"), "the feedback request")
    journeys = (await ok(api.get("/journeys", params={"q": "new-patient"})))["items"]
    [instance] = (await ok(api.get("/journey-instances", params={"patient_id": patient_id,
                                                                 "journey_id": journeys[0]["id"]})))["items"]
    assert instance["status"] == "completed"
    timeline = await ok(api.get(f"/journey-instances/{instance['id']}/timeline"))
    stages = [e["stage"] for e in timeline["entries"] if e["type"] == "stage_changed"]
    assert stages == ["welcome", "booking", "booked", "follow-up"]
    assert not [e for e in timeline["entries"] if e["type"] == "step" and e["status"] == "failed"]
    print(json.dumps({"delivered": await delivered(patient_id)}))


_seen: dict[str, Any] = {}


async def _last_matching(fetch: Callable[[str], Awaitable[list[str]]], conversation_id: str, needle: str) -> Any:
    _seen["replies"] = await fetch(conversation_id)
    return next((r for r in reversed(_seen["replies"]) if needle in r), None)


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return (await value) == expected


async def _contains(values: Awaitable[list[Any]], expected: Any) -> bool:
    return expected in await values


async def _first(api: httpx.AsyncClient, path: str, patient_id: str) -> Any:
    r = await api.get(path, params={"patient_id": patient_id})
    items = r.json().get("items", []) if r.status_code == 200 else []
    return items[0] if items else None
