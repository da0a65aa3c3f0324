"""Push sync to a real FHIR peer on 127.0.0.1 (tests/fixtures/fhir_peer.py): SMART Backend Services
token, one transaction Bundle with conditional creates, links recorded, retries, coalescing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from prm.core import clock, jobs
from prm.fhir.models import EhrLink, SyncRun
from tests.fixtures.fhir_peer import FhirPeer, Stored
from tests.integration.fhir.conftest import NOW

SYNC = ["fhir.sync_patient"]
ALL = ["fhir.sync_patient", "events.deliver"]


async def connect(client: Any, peer: FhirPeer, *, alg: str = "ES384", family: str = "transaction") -> dict[str, Any]:
    r = await client.post("/fhir/connections", json={
        "name": "Peer EHR", "base_url": peer.base_url, "auth": "smart", "token_url": peer.token_url,
        "client_id": "prm-test-client", "signing_alg": alg, "server_family": family,
        "scope": "system/*.write"})
    assert r.status_code == 201, r.text
    jwks = (await client.get("/.well-known/jwks.json")).json()
    peer.register_client("prm-test-client", jwks=jwks)
    return dict(r.json())


async def sync_now(client: Any, connection: dict[str, Any], patient_id: Any) -> dict[str, Any]:
    r = await client.post(f"/fhir/connections/{connection['id']}/sync", json={"patient_id": str(patient_id)})
    assert r.status_code == 202, r.text
    return dict(r.json())


async def run_status(session: Any, run_id: str) -> SyncRun:
    run = await session.scalar(select(SyncRun).where(SyncRun.id == run_id).execution_options(populate_existing=True))
    assert run is not None
    return run


async def test_first_sync_creates_the_chart_on_the_ehr(world: Any, client: Any, session: Any,
                                                       fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    done = await run_status(session, run["id"])
    assert done.status == "succeeded", done.error
    assert fhir_peer.rejected == []
    patients = fhir_peer.with_identifier("Patient", "urn:prm:patient", str(world.patient.id))
    assert len(patients) == 1 and patients[0]["name"][0]["family"] == "Fernández"
    [appointment] = fhir_peer.of_type("Appointment")
    actors = {p["actor"]["reference"] for p in appointment["participant"]}
    assert f"Patient/{patients[0]['id']}" in actors
    assert {f"Practitioner/{r['id']}" for r in fhir_peer.of_type("Practitioner")} <= actors
    assert len(fhir_peer.of_type("Organization")) == 1 and len(fhir_peer.of_type("Location")) == 1
    links = {(link.resource_type, link.local_id): link for link in await session.scalars(select(EhrLink))}
    assert links[("Patient", str(world.patient.id))].ehr_id == patients[0]["id"]
    assert links[("Appointment", str(world.appointment.id))].ehr_version == "1"
    assert done.summary["created"] == 5
    assert len(fhir_peer.token_requests) == 1 and fhir_peer.token_requests[0]["kid"] == connection["key_id"]


async def test_running_twice_sends_nothing_new_and_updates_go_as_put(world: Any, client: Any, session: Any,
                                                                     fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer, alg="RS384")
    with clock.frozen(NOW) as frozen:
        await sync_now(client, connection, world.patient.id)
        await jobs.run_due(session, names=SYNC)
        requests_after_first = len(fhir_peer.requests)
        second = await sync_now(client, connection, world.patient.id)
        await jobs.run_due(session, names=SYNC)
        assert (await run_status(session, second["id"])).status == "succeeded"
        assert len(fhir_peer.requests) == requests_after_first  # unchanged: nothing sent
        frozen.advance(timedelta(minutes=1))
        r = await client.patch(f"/patients/{world.patient.id}", json={"family_name": "Fernández-Ruiz"})
        assert r.status_code == 200, r.text
        await jobs.run_due(session, names=ALL)  # patient.updated → a run → the push
    [patient] = fhir_peer.of_type("Patient")
    assert patient["name"][0]["family"] == "Fernández-Ruiz" and patient["meta"]["versionId"] == "2"
    assert len(fhir_peer.of_type("Appointment")) == 1
    sent = fhir_peer.requests[-1]
    assert sent["method"] == "POST" and sent["verdict"] == 200
    runs = list(await session.scalars(select(SyncRun).order_by(SyncRun.created_at)))
    assert "patient.updated" in runs[-1].triggers and runs[-1].summary.get("updated") == 1
    assert len(fhir_peer.token_requests) == 1  # the token was cached


async def test_transient_failure_is_retried_with_backoff(world: Any, client: Any, session: Any,
                                                         fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    fhir_peer.fail_next(503, retry_after="120")
    with clock.frozen(NOW) as frozen:
        run = await sync_now(client, connection, world.patient.id)
        await jobs.run_due(session, names=SYNC)
        first = await run_status(session, run["id"])
        assert first.status == "retrying" and first.http_status == 503 and first.attempts == 1
        assert first.next_attempt_at is not None and first.next_attempt_at - NOW >= timedelta(seconds=120)
        assert fhir_peer.of_type("Patient") == []
        await jobs.run_due(session, names=SYNC)  # not due yet
        assert (await run_status(session, run["id"])).attempts == 1
        frozen.advance(timedelta(seconds=125))
        await jobs.run_due(session, names=SYNC)
    done = await run_status(session, run["id"])
    assert done.status == "succeeded" and done.attempts == 2
    assert len(fhir_peer.of_type("Patient")) == 1


async def test_a_refused_bundle_fails_the_run_without_retry(world: Any, client: Any, session: Any,
                                                            fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    fhir_peer.fail_next(422)
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    failed = await run_status(session, run["id"])
    assert failed.status == "failed" and failed.http_status == 422 and "422" in (failed.error or "")


async def test_a_wrong_key_is_refused_by_the_ehr(world: Any, client: Any, session: Any, fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    r = await client.patch(f"/fhir/connections/{connection['id']}", json={"rotate_key": True})
    assert r.status_code == 200 and r.json()["key_id"] != connection["key_id"]
    # the EHR still holds the old JWKS: our new assertion's kid is unknown to it
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    failed = await run_status(session, run["id"])
    assert failed.status == "failed" and failed.http_status == 401
    assert fhir_peer.of_type("Patient") == [] and "no key with this kid" in fhir_peer.rejected[-1]


async def test_triggers_coalesce_into_the_waiting_run(world: Any, client: Any, session: Any,
                                                      fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    first = await sync_now(client, connection, world.patient.id)
    second = await sync_now(client, connection, world.patient.id)
    assert first["id"] == second["id"] and second["triggers"] == ["manual", "manual"]


async def test_per_resource_server_gets_one_request_per_resource(world: Any, client: Any, session: Any,
                                                                 fhir_peer: FhirPeer) -> None:
    fhir_peer.writable = frozenset({"Patient", "Organization", "Practitioner", "Location", "Appointment"})
    connection = await connect(client, fhir_peer, family="per_resource")
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    done = await run_status(session, run["id"])
    assert done.status == "succeeded", done.error
    assert [r["method"] for r in fhir_peer.requests] == ["GET"] + ["POST"] * 5  # metadata, then one each
    [appointment] = fhir_peer.of_type("Appointment")
    [patient] = fhir_peer.of_type("Patient")
    assert {"actor": {"reference": f"Patient/{patient['id']}"}} .items() <= appointment["participant"][0].items()


async def test_per_resource_server_that_does_not_write_some_types(world: Any, client: Any, session: Any,
                                                                  fhir_peer: FhirPeer) -> None:
    fhir_peer.writable = frozenset({"Patient", "Practitioner", "Appointment"})  # no Organization, no Location
    connection = await connect(client, fhir_peer, family="per_resource")
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    done = await run_status(session, run["id"])
    assert done.status == "succeeded", done.error
    assert done.summary["skipped"] == 2 and fhir_peer.rejected == []
    [appointment] = fhir_peer.of_type("Appointment")
    assert {"display": "not recorded on this server"} in [p["actor"] for p in appointment["participant"]]


async def test_bearer_connection_and_secrets_never_returned(world: Any, client: Any, session: Any,
                                                            fhir_peer: FhirPeer) -> None:
    fhir_peer.static_tokens.add("static-secret-token")
    r = await client.post("/fhir/connections", json={"name": "Static", "base_url": fhir_peer.base_url,
                                                     "auth": "bearer", "bearer_token": "static-secret-token"})
    assert r.status_code == 201 and "static-secret-token" not in r.text and r.json()["has_bearer_token"]
    listed = await client.get("/fhir/connections")
    assert "static-secret-token" not in listed.text and "PRIVATE KEY" not in listed.text
    run = await sync_now(client, r.json(), world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    assert (await run_status(session, run["id"])).status == "succeeded"
    assert len(fhir_peer.of_type("Patient")) == 1


async def test_refusal_of_ehr_export_consent_skips(world: Any, client: Any, session: Any,
                                                   fhir_peer: FhirPeer) -> None:
    r = await client.post(f"/patients/{world.patient.id}/consent",
                          json={"changes": [{"purpose": "ehr_export", "granted": False}]})
    assert r.status_code == 200, r.text
    connection = await connect(client, fhir_peer)
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    skipped = await run_status(session, run["id"])
    assert skipped.status == "skipped" and "consent" in (skipped.error or "")
    assert fhir_peer.requests == []


async def test_an_intake_reaching_the_ehr_tells_the_practitioner_of_the_next_appointment(
        world: Any, client: Any, session: Any, fhir_peer: FhirPeer, org: Any) -> None:
    from prm.fhir import sync
    from prm.tickets.models import Ticket
    from tests.fixtures.factories import make_user

    user = await make_user(session, org, role="practitioner")
    r = await client.patch(f"/practitioners/{world.clinic.vega.id}", json={"user_id": str(user.id)})
    assert r.status_code == 200, r.text
    await session.refresh(world.clinic.vega)  # the request changed it in its own session
    connection = await connect(client, fhir_peer)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=ALL)  # the world's own events first
        before = set(await session.scalars(select(Ticket.id)))
        await sync.enqueue(session, org.id, world.patient.id, "intake.submitted")
        await jobs.run_due(session, names=ALL)
        await jobs.run_due(session, names=ALL)  # a second delivery changes nothing
    tickets = [t for t in await session.scalars(select(Ticket)) if t.id not in before]
    assert len(tickets) == 1
    [ticket] = tickets
    assert ticket.assignee_id == user.id and ticket.patient_id == world.patient.id and "ehr" in ticket.tags
    [patient] = fhir_peer.of_type("Patient")
    assert f"Patient/{patient['id']}" in ticket.description
    assert connection["id"]


async def test_an_ehr_that_already_has_the_patient_gets_our_content_as_an_update(
        world: Any, client: Any, session: Any, fhir_peer: FhirPeer) -> None:
    """Conditional create matched an existing resource (our link lost, a second connection, a
    previous installation): the EHR answers 200 with its id, and the same run PUTs our content."""
    pid = str(world.patient.id)
    fhir_peer.resources[("Patient", "900")] = Stored(
        {"resourceType": "Patient", "id": "900", "identifier": [{"system": "urn:prm:patient", "value": pid}],
         "name": [{"family": "Stale"}], "meta": {"versionId": "1"}}, 1)
    connection = await connect(client, fhir_peer)
    run = await sync_now(client, connection, world.patient.id)
    with clock.frozen(NOW):
        await jobs.run_due(session, names=SYNC)
    done = await run_status(session, run["id"])
    assert done.status == "succeeded" and done.summary.get("matched") == 1, done.summary
    [patient] = fhir_peer.with_identifier("Patient", "urn:prm:patient", pid)
    assert patient["id"] == "900" and patient["name"][0]["family"] == "Fernández"
    assert patient["meta"]["versionId"] == "2"


async def test_a_token_the_ehr_revoked_is_replaced_once(world: Any, client: Any, session: Any,
                                                          fhir_peer: FhirPeer) -> None:
    connection = await connect(client, fhir_peer)
    with clock.frozen(NOW) as frozen:
        await sync_now(client, connection, world.patient.id)
        await jobs.run_due(session, names=SYNC)
        fhir_peer.expire_tokens()  # the EHR forgets the token our cache still holds
        frozen.advance(timedelta(minutes=1))
        r = await client.patch(f"/patients/{world.patient.id}", json={"given_name": "Lucía María"})
        assert r.status_code == 200
        await jobs.run_due(session, names=ALL)
    runs = list(await session.scalars(select(SyncRun).order_by(SyncRun.created_at)))
    assert runs[-1].status == "succeeded" and runs[-1].attempts == 1
    assert len(fhir_peer.token_requests) == 2
    [patient] = fhir_peer.of_type("Patient")
    assert patient["name"][0]["given"] == ["Lucía", "María"]


async def test_a_merged_patient_is_sent_inactive_pointing_at_the_survivor(
        world: Any, client: Any, session: Any, fhir_peer: FhirPeer, org: Any) -> None:
    from tests.fixtures.factories import make_patient

    duplicate = await make_patient(session, org, given_name="Lucia", family_name="Fernandez")
    connection = await connect(client, fhir_peer)
    with clock.frozen(NOW) as frozen:
        for pid in (world.patient.id, duplicate.id):
            await sync_now(client, connection, pid)
        await jobs.run_due(session, names=SYNC)
        frozen.advance(timedelta(minutes=1))
        r = await client.post(f"/patients/{world.patient.id}/merge", json={"duplicate_id": str(duplicate.id)})
        assert r.status_code == 200, r.text
        await jobs.run_due(session, names=ALL)
    [survivor] = fhir_peer.with_identifier("Patient", "urn:prm:patient", str(world.patient.id))
    [merged] = fhir_peer.with_identifier("Patient", "urn:prm:patient", str(duplicate.id))
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    assert len(fhir_peer.of_type("Patient")) == 2


async def test_queueing_many_sync_runs_on_one_connection_keeps_working(world: Any, org: Any, client: Any,
                                                                       session: Any, fhir_peer: FhirPeer) -> None:
    # psycopg prepares a statement sent five times on a connection and PostgreSQL then plans it
    # generically: the run's ON CONFLICT must still match the one-waiting-run partial index (its
    # predicate written as literals, not bound parameters, or the insert fails from about the tenth time)
    from prm.fhir import sync
    from tests.fixtures.factories import make_patient

    connection = await connect(client, fhir_peer)
    patients = [await make_patient(session, org, given_name=f"Q{i}") for i in range(15)]
    runs = [run for patient in patients
            for run in await sync.enqueue(session, org.id, patient.id, "manual")]
    assert len({run.id for run in runs}) == 15 and {str(run.connection_id) for run in runs} == {connection["id"]}
    # a second trigger for a patient with a waiting run joins it
    [again] = await sync.enqueue(session, org.id, patients[0].id, "patient.updated")
    assert again.id == runs[0].id and again.triggers == ["manual", "patient.updated"]
