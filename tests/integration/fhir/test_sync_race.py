"""The concurrent conditional-create race cannot duplicate a patient on the EHR.

FHIR servers do not make conditional create atomic (HAPI #3141, Azure #1382, Medplum #4878): two
requests with the same `ifNoneExist` that overlap both create. The peer reproduces that (its
`race_window`), which the control test shows. Our pushes of one patient to one EHR are serialised
(advisory lock per connection and patient), and the second push sees the links the first recorded,
so it updates instead of creating: one patient on the EHR, whatever the overlap.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import select, update

from prm.core import clock, jobs
from prm.fhir import sync
from prm.fhir.models import EhrConnection, SyncRun
from tests.conftest import Committed
from tests.fixtures.fhir_peer import FhirPeer
from tests.integration.fhir.conftest import NOW, build_world


def _bundle(pid: str) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": f"urn:uuid:{pid}",
        "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:prm:patient", "value": pid}],
                     "name": [{"family": "Race"}]},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:prm:patient|{pid}"}}]}


async def test_control_the_peer_duplicates_on_overlapping_conditional_creates(fhir_peer: FhirPeer) -> None:
    fhir_peer.race_window = 0.3
    fhir_peer.static_tokens.add("t")
    pid = str(uuid.uuid4())
    async with httpx.AsyncClient(headers={"Authorization": "Bearer t"}) as http:
        answers = await asyncio.gather(*[http.post(fhir_peer.base_url, json=_bundle(pid)) for _ in range(2)])
    assert [a.status_code for a in answers] == [200, 200]
    assert len(fhir_peer.with_identifier("Patient", "urn:prm:patient", pid)) == 2  # the race, unprotected


async def _wait_for(committed: Committed, run_id: uuid.UUID, status: str) -> None:
    for _ in range(200):
        async with committed.session() as s:
            if await s.scalar(select(SyncRun.status).where(SyncRun.id == run_id)) == status:
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"run {run_id} never became {status}")


async def test_overlapping_sync_runs_of_one_patient_create_it_once(committed: Committed, fhir_peer: FhirPeer
                                                                   ) -> None:
    fhir_peer.race_window = 0.5
    org, key = await committed.org()
    async with committed.session() as s:
        with clock.frozen(NOW):
            world = await build_world(s, org)
        await s.commit()
    client = committed.client(key)
    r = await client.post("/fhir/connections", json={
        "name": "Peer", "base_url": fhir_peer.base_url, "auth": "smart", "token_url": fhir_peer.token_url,
        "client_id": "race-client"})
    assert r.status_code == 201, r.text
    fhir_peer.register_client("race-client", jwks=(await client.get("/.well-known/jwks.json")).json())
    connection_id = uuid.UUID(r.json()["id"])

    async with committed.session() as s:
        [first] = await sync.enqueue(s, org.id, world.patient.id, "manual", connection_ids=[connection_id])
        await s.commit()
    job_a = asyncio.create_task(jobs.run_job(sync.SYNC_JOB, run_id=str(first.id)))
    await _wait_for(committed, first.id, "running")  # A is pushing (inside the peer's race window)
    async with committed.session() as s:
        [second] = await sync.enqueue(s, org.id, world.patient.id, "patient.updated",
                                      connection_ids=[connection_id])
        await s.commit()
    assert second.id != first.id  # a new run: the first is no longer waiting
    job_b = asyncio.create_task(jobs.run_job(sync.SYNC_JOB, run_id=str(second.id)))
    results = await asyncio.gather(job_a, job_b)
    assert results == ["succeeded", "succeeded"]
    assert len(fhir_peer.with_identifier("Patient", "urn:prm:patient", str(world.patient.id))) == 1
    assert len(fhir_peer.of_type("Appointment")) == 1
    async with committed.session() as s:
        runs = {r.id: r for r in await s.scalars(select(SyncRun).where(SyncRun.org_id == org.id))}
    assert runs[first.id].finished_at is not None and runs[second.id].started_at is not None
    # B waited for A: it started before A finished but found everything already linked
    assert runs[second.id].summary.get("created", 0) == 0
    await _cleanup(committed, org.id)


async def _cleanup(committed: Committed, org_id: uuid.UUID) -> None:
    """Committed jobs of this organisation (event deliveries, reminders) must not run in later tests."""
    async with committed.session() as s:
        await s.execute(update(EhrConnection).where(EhrConnection.org_id == org_id).values(enabled=False))
        await s.commit()
    await committed.cancel_queued_jobs(org_id)
