"""The plan's third end-to-end flow: from a digital intake form to a FHIR-compliant EHR, against the
service as a process (`prm serve`: API and worker) and a FHIR server peer on 127.0.0.1.

The peer (tests/fixtures/fhir_peer.py) is the EHR: it issues SMART Backend Services tokens only after
verifying our client assertion against our JWKS, which it fetches over HTTP from the running
service like an EHR does; it validates every resource it receives with fhir.resources R4B and
implements transaction Bundles with conditional create. A patient completes a digital intake; the
data is validated and stored, the patient linked with consent, the summary generated, the chart
synced to the EHR, the provider notified, and the "chart" on the peer holds the expected resources
— nothing lost when the peer fails once (retry), nothing doubled when the sync runs again.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from prm.core import embedded
from tests.e2e.processes import free_port, until
from tests.fixtures.fhir_peer import FhirPeer

pytestmark = pytest.mark.slow

CLIENT_ID = "prm-e2e-clinic"
QUESTIONNAIRE = {"key": "new-patient", "title": "New patient", "item": [
    {"linkId": "reason", "text": "What brings you in?", "type": "text", "required": True},
    {"linkId": "smoker", "text": "Do you smoke?", "type": "boolean", "required": True}]}
RECORDS = [
    {"client_item_id": "reason", "type": "answer", "data": {"link_id": "reason", "value": "Toothache"}},
    {"client_item_id": "smoker", "type": "answer", "data": {"link_id": "smoker", "value": False}},
    {"client_item_id": "cc", "type": "chief_complaint", "data": {"text": "Toothache for three days"}},
    {"client_item_id": "s1", "type": "symptom", "data": {"name": "toothache", "severity": "moderate",
                                                         "duration_days": 3}},
    {"client_item_id": "m1", "type": "medication", "data": {"name": "Ibuprofen", "dose": "400 mg"}},
    {"client_item_id": "a1", "type": "allergy", "data": {"substance": "Penicillin", "reaction": "hives",
                                                         "category": "medication"}},
    {"client_item_id": "v1", "type": "vital", "data": {"kind": "body_temperature", "value": 37.9}},
]
# what the patient's chart on the EHR must hold afterwards (the demo clinic's own patients are
# synced too, as their events arrive: only this patient's resources are counted)
CHART = {"Appointment": 1, "QuestionnaireResponse": 1, "Observation": 2, "Condition": 1,
         "MedicationStatement": 1, "AllergyIntolerance": 1, "DocumentReference": 1}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["reference"]} if isinstance(node.get("reference"), str) else set()
        return found.union(*(_refs(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def chart_of(peer: FhirPeer, patient_ref: str) -> dict[str, int]:
    return {t: sum(patient_ref in _refs(r) for r in peer.of_type(t)) for t in CHART}


@dataclass
class Running:
    base: str
    proc: subprocess.Popen[bytes]
    log: Path
    peer: FhirPeer


@pytest.fixture
def running() -> Iterator[Running]:
    workdir = Path(tempfile.mkdtemp(prefix="prm-e2e-ehr-"))
    peer = FhirPeer()
    peer.start()
    db_url = embedded.start(workdir / "pg", throwaway=True)
    port, log = free_port(), workdir / "serve.log"
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "SECRET_KEY"}}
    env.update(DATABASE_URL=db_url, PRM_DATA_DIR=str(workdir / "data"), LOG_LEVEL="INFO", LOG_JSON="true",
               ENVIRONMENT="development", PUBLIC_BASE_URL=base, OUTBOUND_ALLOW_PRIVATE_TARGETS="true",
               FHIR_SYNC_RETRY_BASE_SECONDS="1")
    proc = subprocess.Popen([sys.executable, "-m", "prm", "serve", "--port", str(port)], env=env,
                            cwd=workdir, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield Running(base, proc, log, peer)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
        peer.stop()
        embedded.stop(workdir / "pg")
        output = log.read_text()
        shutil.rmtree(workdir, ignore_errors=True)
    assert code == 0, output[-3000:]



async def test_intake_to_ehr(running: Running) -> None:
    async with httpx.AsyncClient(base_url=running.base, timeout=20) as anon:
        async def ready() -> bool:
            assert running.proc.poll() is None, "server exited early:\n" + running.log.read_text()[-4000:]
            try:
                return (await anon.get("/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await until(ready, "the service to be ready", within=180)
        login = await anon.post("/auth/token", data={"username": "admin@demo-clinic.example",
                                                     "password": "demo-password-123"})
        assert login.status_code == 200, login.text
        async with httpx.AsyncClient(base_url=running.base, timeout=20, headers={
                "Authorization": f"Bearer {login.json()['access_token']}"}) as admin:
            await _flow(admin, running)
    problems = [line for line in running.log.read_text().splitlines()
                if '"level": "error"' in line or '"level": "critical"' in line or "Traceback" in line]
    assert problems == [], "\n".join(problems[:5])


async def _flow(admin: httpx.AsyncClient, running: Running) -> None:
    peer = running.peer

    async def ok(response: Awaitable[httpx.Response], status: int = 200) -> Any:
        r = await response
        assert r.status_code == status, r.text
        return r.json()

    # the EHR connection: SMART Backend Services; the EHR registers our JWKS URL and client id
    connection = await ok(admin.post("/fhir/connections", json={
        "name": "Peer EHR", "base_url": peer.base_url, "auth": "smart", "token_url": peer.token_url,
        "client_id": CLIENT_ID, "signing_alg": "ES384"}), 201)
    peer.register_client(CLIENT_ID, jwks_url=connection["jwks_url"])
    assert connection["jwks_url"] == f"{running.base}/.well-known/jwks.json"

    # a practitioner with a user, open around the clock (UTC), and the patient's appointment
    user = await ok(admin.post("/admin/users", json={"email": "dr.adams@demo-clinic.example",
                                                     "password": "a-long-password-123", "role": "practitioner",
                                                     "full_name": "Dr Adams"}), 201)
    location = await ok(admin.post("/locations", json={"name": "Walk-in centre", "timezone": "UTC"}), 201)
    gp = await ok(admin.post("/practitioners", json={"name": "Dr Adams", "timezone": "UTC",
                                                     "user_id": user["id"]}), 201)
    for weekday in range(7):
        await ok(admin.post(f"/practitioners/{gp['id']}/availability/rules", json={
            "location_id": location["id"], "weekday": weekday, "start_time": "00:00", "end_time": "23:45"}), 201)
    service = await ok(admin.post("/services", json={
        "name": "GP consultation", "duration_minutes": 15, "min_notice_minutes": 60, "slot_step_minutes": 15,
        "practitioner_ids": [gp["id"]]}), 201)
    patient = await ok(admin.post("/patients", json={"given_name": "Jordan", "family_name": "Blake",
                                                     "birth_date": "1990-06-15", "gender": "female",
                                                     "phones": [{"number": "+34611987654"}]}), 201)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    slots = await ok(admin.get("/slots", params={"service_id": service["id"], "start_date": tomorrow,
                                                 "end_date": tomorrow}))
    await ok(admin.post("/appointments", json={"patient_id": patient["id"], "service_id": service["id"],
                                               "practitioner_id": gp["id"], "start_at": slots[0]["start_at"]}), 201)

    async def runs() -> list[dict[str, Any]]:
        return list((await ok(admin.get("/fhir/sync-runs", params={"patient_id": patient["id"]})))["items"])

    async def all_done() -> bool:
        found = await runs()
        return bool(found) and all(r["status"] in ("succeeded", "failed", "skipped") for r in found)

    await until(all_done, "the booking's sync")
    assert {r["status"] for r in await runs()} == {"succeeded"}, await runs()
    [ehr_patient] = peer.with_identifier("Patient", "urn:prm:patient", patient["id"])
    mine = f"Patient/{ehr_patient['id']}"
    assert chart_of(peer, mine)["Appointment"] == 1

    # the EHR fails once on the next push
    peer.fail_next(503, retry_after="1")

    # the digital intake form: questionnaire, answers and records, link with consent, submit
    await ok(admin.post("/intake/questionnaires", json=QUESTIONNAIRE), 201)
    intake = await ok(admin.post("/intake/sessions", json={"source": "web_form",
                                                           "questionnaire_key": "new-patient"}), 201)
    await ok(admin.post(f"/intake/sessions/{intake['id']}/records", json={"records": RECORDS}))
    bad = await admin.post(f"/intake/sessions/{intake['id']}/records", json={"records": [
        {"client_item_id": "v2", "type": "vital", "data": {"kind": "heart_rate", "value": "fast"}}]})
    assert bad.status_code == 422  # validated before it is stored
    await ok(admin.post(f"/intake/sessions/{intake['id']}/link", json={
        "patient_id": patient["id"], "consent": {"granted": True, "method": "electronic"}}))
    await ok(admin.post(f"/intake/sessions/{intake['id']}/submit", json={}))

    async def summarised() -> bool:
        return bool((await ok(admin.get(f"/intake/sessions/{intake['id']}")))["summary_status"] == "ready")

    await until(summarised, "the intake summary")

    async def charted() -> bool:
        return await all_done() and chart_of(peer, mine)["DocumentReference"] == 1

    await until(charted, "the intake in the EHR chart")
    found = await runs()
    assert {r["status"] for r in found} == {"succeeded"}, found
    assert any(r["attempts"] >= 2 for r in found), found  # the 503 was retried
    assert any("intake.submitted" in r["triggers"] for r in found)
    assert chart_of(peer, mine) == CHART
    assert len(peer.with_identifier("Patient", "urn:prm:patient", patient["id"])) == 1
    assert len(peer.with_identifier("Practitioner", "urn:prm:practitioner", gp["id"])) == 1
    assert len(peer.with_identifier("Questionnaire", "urn:prm:questionnaire", intake["questionnaire_id"])) == 1
    assert peer.rejected == [] and len(peer.token_requests) >= 1

    # the provider is told: a ticket for the practitioner of the next appointment
    async def told() -> Any:
        tickets = (await ok(admin.get("/tickets", params={"tag": "ehr"})))["items"]
        return tickets[0] if tickets else None

    ticket = await until(told, "the practitioner's ticket")
    assert ticket["assignee_id"] == user["id"] and ticket["patient_id"] == patient["id"]

    # the sync run again: nothing new on the EHR
    before = {"Patient": len(peer.with_identifier("Patient", "urn:prm:patient", patient["id"])), **chart_of(peer, mine)}
    await ok(admin.post(f"/fhir/connections/{connection['id']}/sync", json={"patient_id": patient["id"]}), 202)
    await until(all_done, "the manual sync")
    after = {"Patient": len(peer.with_identifier("Patient", "urn:prm:patient", patient["id"])), **chart_of(peer, mine)}
    assert after == before == {"Patient": 1, **CHART}
    # what we read back through our own FHIR API matches
    bundle = await ok(admin.get("/fhir/R4/Condition", params={"patient": patient["id"]}))
    assert bundle["total"] == 1
