"""Semantic search (the plan's vector tests and more): ingestion through events, chunking, embeddings,
the one-statement hybrid query, filters, consent, tenancy, and recall against exact search."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, select, text

from prm.adapters.embeddings import DIMENSIONS, HashingEmbedder, cosine_similarity, normalise
from prm.core import audit, clock, jobs
from prm.core.errors import NotFound, ValidationFailed
from prm.core.events import EventRecord
from prm.patients import service as patients
from prm.tickets import service as tickets
from prm.tickets.schemas import CommentCreate, TicketCreate
from prm.vector import service
from prm.vector.chunking import chunk_text
from prm.vector.models import SearchChunk
from prm.vector.service import SearchFilters
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.messaging import configure_channel, new_phone
from tests.integration.vector.conftest import (
    CONFIG,
    T0,
    CountingEmbedder,
    FixedEmbedder,
    chunks_of,
    conversation_with,
    system,
)

HASHING = HashingEmbedder()

KNEE = [(0, "in", "Hello, my knee has been swollen and painful since I started the new medication"),
        (1, "out", "Sorry to hear that. Since which day?"),
        (2, "in", "Since Monday, it gets worse at night")]
INSURANCE = [(0, "in", "My insurance changed last week, I have a new policy number"),
             (1, "out", "Thanks, please send a photo of the new card")]


async def search(session, org, query: str, **filters) -> list[service.Hit]:
    return await service.search(session, principal(org), query, SearchFilters(**filters), embedder=HASHING,
                                config=CONFIG)


# --- the plan's named tests ----------------------------------------------------------------------


async def test_ingest_conversation_transcripts(session, org, anon_client: httpx.AsyncClient, settings,
                                               make_client) -> None:
    """Inbound WhatsApp messages and a voice-agent call are indexed by the jobs their events queue."""
    from prm.webhooks.twilio_inbound import hmac_signature
    from tests.fixtures.conversation_fixtures import post_message, twilio_signing

    phone = new_phone()
    await configure_channel(session, org, "whatsapp", provider="sandbox", sender="+34910000001")
    with twilio_signing(settings), clock.frozen(T0) as frozen:
        await post_message(anon_client, "My knee hurts since the new medication", from_phone=phone)
        frozen.advance(timedelta(minutes=1))
        await post_message(anon_client, "It is swollen at night", from_phone=phone)
        await jobs.run_due(session)

    patient = await patients.find_by_phone(session, org.id, phone)
    assert patient is not None
    [chunk] = await chunks_of(session, org.id, patient_id=patient.id, source_type="conversation")
    assert chunk.channel == "whatsapp" and chunk.model == HASHING.model and len(chunk.embedding) == DIMENSIONS
    assert "Patient: My knee hurts since the new medication" in chunk.text
    assert "Patient: It is swollen at night" in chunk.text
    assert len(chunk.citation["message_ids"]) >= 2  # every message cited (assistant replies included)

    # a staff reply in the conversation is indexed too (event conversation.message_added)
    staff = await make_client("coordinator")
    with clock.frozen(T0 + timedelta(minutes=3)):
        r = await staff.post(f"/conversations/{chunk.source_id}/messages",
                             json={"body": "Please keep the leg elevated and come in tomorrow"})
        assert r.status_code == 201, r.text
        await jobs.run_due(session)
    [chunk] = await chunks_of(session, org.id, patient_id=patient.id, source_type="conversation")
    assert chunk.text.endswith("Clinic: Please keep the leg elevated and come in tomorrow")
    assert r.json()["id"] in chunk.citation["message_ids"]

    # a call transcript from the voice agent, chunked by speaker turns
    secret = uuid.uuid4().hex
    await configure_channel(session, org, "voice", webhook_secret=secret)
    body = json.dumps({"call_id": "call-knee", "caller": phone, "callee": "+34910000001",
                       "transcript": "Agent: Clinic, good morning.\nCaller: My insurance changed last week.",
                       "extracted": {}, "duration_seconds": 30}).encode()
    r = await anon_client.post(f"/webhooks/voice-agent/{org.id}", content=body,
                               headers={"Content-Type": "application/json",
                                        "X-Signature": f"sha256={hmac_signature(secret, body)}"})
    assert r.status_code == 200, r.text
    await jobs.run_due(session)
    [call] = await chunks_of(session, org.id, patient_id=patient.id, source_type="voice_call")
    assert call.channel == "voice" and call.citation == {"turns": [0, 1]}
    assert call.text == "Agent: Clinic, good morning.\nCaller: My insurance changed last week."
    hits = await search(session, org, "insurance changed", patient_id=patient.id)
    assert hits[0].source_type == "voice_call" and hits[0].link == f"/communications/{call.source_id}"


async def test_chunk_text(session, org) -> None:
    """A long note becomes several chunks, none longer than the limit, nothing lost."""
    note = " ".join(f"Sentence number {i} about the patient's follow-up plan." for i in range(60))
    chunks = chunk_text(note, max_chars=300)
    assert len(chunks) > 5 and all(len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == note.split()
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    # and a long conversation is stored as several chunks of one source, in order
    patient = await make_patient(session, org)
    lines = [(i * 2, "in" if i % 2 else "out", f"Message {i}: " + "details about the treatment " * 8)
             for i in range(20)]
    conversation, _ = await conversation_with(session, org.id, patient.id, lines)
    stored = await service.index_conversation(session, system(org.id), conversation.id, HASHING,
                                              service.SearchConfig(chunk_max_chars=500))
    rows = await chunks_of(session, org.id, source_id=conversation.id)
    assert stored == len(rows) > 3 and [r.ordinal for r in rows] == list(range(len(rows)))
    assert all(len(r.text) <= 500 for r in rows)


async def test_generate_embeddings(session, org) -> None:
    """384-d unit vectors stored with the model's name; unchanged chunks are not embedded again."""
    patient = await make_patient(session, org)
    conversation, _ = await conversation_with(session, org.id, patient.id, KNEE)
    counting = CountingEmbedder()
    await service.index_conversation(session, system(org.id), conversation.id, counting, CONFIG)
    assert len(counting.embedded) == 1
    [row] = await chunks_of(session, org.id, source_id=conversation.id)
    assert row.model == "hashing-v1" and len(row.embedding) == DIMENSIONS
    assert math.isclose(math.sqrt(sum(x * x for x in row.embedding)), 1.0, rel_tol=1e-5)
    assert list(row.embedding) == pytest.approx((await HASHING.embed([row.text]))[0], abs=1e-6)
    # indexing again with nothing new embeds nothing; a new message far later makes one new chunk
    await service.index_conversation(session, system(org.id), conversation.id, counting, CONFIG)
    assert len(counting.embedded) == 1
    await conversation_with(session, org.id, patient.id, [(300, "in", "Also my elbow now")])
    await service.index_conversation(session, system(org.id), conversation.id, counting, CONFIG)
    assert counting.embedded[1:] == ["Patient: Also my elbow now"]
    assert len(await chunks_of(session, org.id, source_id=conversation.id)) == 2


async def test_hybrid_search(session, org) -> None:
    """Vector and full-text rankings fused in one statement; ranks, snippet and link per hit."""
    knee_patient, insurance_patient = await make_patient(session, org), await make_patient(session, org)
    knee, _ = await conversation_with(session, org.id, knee_patient.id, KNEE)
    insurance, _ = await conversation_with(session, org.id, insurance_patient.id, INSURANCE)
    for conv in (knee, insurance):
        await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)

    hits = await search(session, org, "swollen knee")
    assert hits[0].source_id == knee.id and hits[0].source_type == "conversation"
    top = hits[0]
    assert top.vector_rank == 1 and top.text_rank == 1
    assert top.score == pytest.approx(2 / (60 + 1))
    assert "<mark>knee</mark>" in top.snippet and "<mark>swollen</mark>" in top.snippet
    assert top.link == f"/conversations/{knee.id}" and top.patient_id == knee_patient.id
    assert len(top.citation["message_ids"]) == 3
    assert all(h.source_id != insurance.id or h.text_rank is None for h in hits)

    # websearch syntax: a quoted phrase, and negation
    assert [h.source_id for h in await search(session, org, '"new policy number"') if h.text_rank] == [insurance.id]
    negated = await search(session, org, "new -insurance")
    assert insurance.id not in [h.source_id for h in negated if h.text_rank is not None]


async def test_search_by_patient(session, org, client: httpx.AsyncClient) -> None:
    one, two = await make_patient(session, org), await make_patient(session, org)
    a, _ = await conversation_with(session, org.id, one.id, KNEE)
    b, _ = await conversation_with(session, org.id, two.id, [(0, "in", "My knee is fine now, thanks")])
    for conv in (a, b):
        await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)
    assert {h.source_id for h in await search(session, org, "knee")} == {a.id, b.id}
    only = await search(session, org, "knee", patient_id=two.id)
    assert [h.source_id for h in only] == [b.id]

    r = await client.post(f"/patients/{one.id}/search", json={"query": "knee"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [i["source_id"] for i in body["items"]] == [str(a.id)]
    assert body["quality"] == "lexical" and body["model"] == "hashing-v1"
    # filters: channel, source type and dates
    assert await search(session, org, "knee", channels=("sms",)) == []
    assert await search(session, org, "knee", source_types=("ticket",)) == []
    assert await search(session, org, "knee", occurred_from=T0 + timedelta(hours=1)) == []
    assert len(await search(session, org, "knee", occurred_from=T0, occurred_to=T0 + timedelta(hours=1))) == 2
    # the search is audited as a read of patient data, without the query text
    entry = await session.scalar(select(audit.AuditEntry).where(
        audit.AuditEntry.org_id == org.id, audit.AuditEntry.action == "search",
        audit.AuditEntry.patient_id == one.id))
    assert entry is not None and entry.details["patient_ids"] == [str(one.id)]
    assert "knee" not in json.dumps(entry.details)


async def test_delete_source_chunks(session, org, client: httpx.AsyncClient) -> None:
    """Deleting a document removes its chunks; a deleted ticket comment's chunks go at reindexing."""
    r = await client.post("/search/documents", json={
        "title": "Knee replacement aftercare", "body": "Keep the knee elevated.\n\nIce it twice a day."})
    assert r.status_code == 201, r.text
    document_id = uuid.UUID(r.json()["id"])
    assert r.json()["indexed_at"] is None
    await jobs.run_due(session)
    assert len(await chunks_of(session, org.id, source_id=document_id)) == 1
    detail = (await client.get(f"/search/documents/{document_id}")).json()
    assert detail["chunk_count"] == 1 and detail["indexed_at"] is not None
    hits = (await client.post("/search", json={"query": "ice the knee"})).json()["items"]
    assert hits[0]["source_type"] == "document" and hits[0]["link"] == f"/search/documents/{document_id}"

    assert (await client.delete(f"/search/documents/{document_id}")).status_code == 204
    assert await chunks_of(session, org.id, source_id=document_id) == []
    assert (await client.get(f"/search/documents/{document_id}")).status_code == 404
    assert (await client.delete(f"/search/documents/{document_id}")).status_code == 404

    # ticket comments (internal notes too) are indexed by the ticket.commented event
    patient = await make_patient(session, org)
    who = principal(org)
    ticket = await tickets.create(session, who, TicketCreate(subject="Billing question", patient_id=patient.id,
                                                             auto_assign=False))
    await tickets.add_comment(session, who, ticket.id, CommentCreate(body="Patient disputes the invoice",
                                                                     internal=True))
    await jobs.run_due(session)
    [note] = await chunks_of(session, org.id, source_type="ticket_comment")
    assert note.citation["ticket_id"] == str(ticket.id) and note.citation["internal"] is True
    hits = await search(session, org, "invoice dispute")
    assert hits[0].source_type == "ticket_comment" and hits[0].link == f"/tickets/{ticket.id}/comments"
    removed = await service._delete_source(session, org.id, "ticket_comment", note.source_id)
    assert removed == 1 and await chunks_of(session, org.id, source_type="ticket_comment") == []


async def test_vector_similarity(session) -> None:
    """pgvector's cosine distance is 1 - the cosine similarity we compute in Python."""
    a, b, c = await HASHING.embed(["knee pain after medication", "painful knee", "new insurance card"])
    row = (await session.execute(
        text("SELECT CAST(:a AS vector) <=> CAST(:b AS vector), CAST(:a AS vector) <=> CAST(:c AS vector), "
             "CAST(:a AS vector) <=> CAST(:a AS vector)"),
        {"a": str(a), "b": str(b), "c": str(c)})).one()
    assert row[0] == pytest.approx(1 - cosine_similarity(a, b), abs=1e-6)
    assert row[1] == pytest.approx(1 - cosine_similarity(a, c), abs=1e-6)
    assert row[2] == pytest.approx(0, abs=1e-6)
    assert row[0] < row[1]


async def test_empty_search_results(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org)
    conv, _ = await conversation_with(session, org.id, patient.id, KNEE)
    await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)
    for query in ("", "   ", "the and of", "zxqv wplm", '""', "-", "!!!"):
        assert await search(session, org, query) == [], query
    r = await client.post("/search", json={"query": ""})
    assert r.status_code == 200 and r.json()["items"] == []
    # a search in an organisation with nothing indexed
    r = await client.post("/search", json={"query": "knee", "source_types": ["document"]})
    assert r.status_code == 200 and r.json()["items"] == []


# --- consent, deletion, merge ----------------------------------------------------------------------


async def test_consent_withdrawal_removes_chunks(session, org, client: httpx.AsyncClient) -> None:
    patient = await make_patient(session, org)
    conv, _ = await conversation_with(session, org.id, patient.id, KNEE)
    await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)
    assert len(await chunks_of(session, org.id, patient_id=patient.id)) == 1

    r = await client.post(f"/patients/{patient.id}/consent",
                          json={"changes": [{"channel": None, "purpose": "ai_processing", "granted": False}]})
    assert r.status_code in (200, 201), r.text
    await jobs.run_due(session)
    assert await chunks_of(session, org.id, patient_id=patient.id) == []
    assert await search(session, org, "knee") == []
    # while withdrawn, nothing new is indexed
    assert await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG) == 0
    assert await chunks_of(session, org.id, patient_id=patient.id) == []
    # granted again: re-indexed by a job
    r = await client.post(f"/patients/{patient.id}/consent",
                          json={"changes": [{"channel": None, "purpose": "ai_processing", "granted": True}]})
    assert r.status_code in (200, 201), r.text
    await jobs.run_due(session)
    assert len(await chunks_of(session, org.id, patient_id=patient.id)) == 1


async def test_deleted_patient_chunks_removed_and_merge_moves_them(session, org, client) -> None:
    gone, duplicate, survivor = [await make_patient(session, org) for _ in range(3)]
    for p in (gone, duplicate):
        conv, _ = await conversation_with(session, org.id, p.id, KNEE)
        await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)
    assert (await client.delete(f"/patients/{gone.id}")).status_code == 204
    await jobs.run_due(session)
    assert await chunks_of(session, org.id, patient_id=gone.id) == []

    r = await client.post(f"/patients/{survivor.id}/merge", json={"duplicate_id": str(duplicate.id)})
    assert r.status_code == 200, r.text
    assert r.json()["moved"]["vector"] == 1
    await jobs.run_due(session)
    assert len(await chunks_of(session, org.id, patient_id=survivor.id)) == 1
    # searching the duplicate's id follows the merge
    survivor_id, duplicate_id = survivor.id, duplicate.id
    session.expire(duplicate)  # the merge ran in the request's session: forget this session's copy
    hits = await search(session, org, "knee", patient_id=duplicate_id)
    assert [h.patient_id for h in hits] == [survivor_id]


# --- tenancy -------------------------------------------------------------------------------------------


async def test_other_org_chunks_never_appear(session, org, other_org, make_client) -> None:
    mine, theirs = await make_patient(session, org), await make_patient(session, other_org)
    conv, _ = await conversation_with(session, org.id, mine.id, KNEE)
    other_conv, _ = await conversation_with(session, other_org.id, theirs.id, KNEE)
    await service.index_conversation(session, system(org.id), conv.id, HASHING, CONFIG)
    await service.index_conversation(session, system(other_org.id), other_conv.id, HASHING, CONFIG)

    assert [h.source_id for h in await search(session, org, "knee swollen medication")] == [conv.id]
    assert [h.source_id for h in await search(session, other_org, "knee swollen medication")] == [other_conv.id]
    with pytest.raises(ValidationFailed):
        await search(session, org, "knee", patient_id=theirs.id)
    with pytest.raises(NotFound):
        await service.search(session, principal(org), "knee", SearchFilters(patient_id=theirs.id),
                             embedder=HASHING, config=CONFIG, patient_in_path=True)
    c = await make_client("support_agent")
    r = await c.post("/search", json={"query": "knee", "patient_id": str(theirs.id)})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "patient_id"
    assert (await c.post(f"/patients/{theirs.id}/search", json={"query": "knee"})).status_code == 404
    stats = (await c.get("/search/stats")).json()
    assert stats["chunks"] == 1 and stats["patients"] == 1 and stats["quality"] == "lexical"
    # another org's document is not found
    other = await make_client("admin", for_org=other_org)
    doc = (await other.post("/search/documents", json={"title": "Theirs", "body": "text"})).json()
    assert (await c.get(f"/search/documents/{doc['id']}")).status_code == 404


async def test_scopes_and_validation(session, org, make_client) -> None:
    practitioner = await make_client("practitioner")
    assert (await practitioner.post("/search", json={"query": "knee"})).status_code == 200
    r = await practitioner.post("/search/documents", json={"title": "t", "body": "b"})
    assert r.status_code == 403 and "search:write" in r.text
    anon = await make_client("anonymous")
    assert (await anon.post("/search", json={"query": "knee"})).status_code == 401
    admin = await make_client("admin")
    for body, field in (({"query": "x" * 501}, "query"), ({"query": "k", "source_types": ["emails"]}, "source_types.0"),
                        ({"query": "k", "limit": 0}, "limit"),
                        ({"query": "k", "occurred_from": "2026-11-30T10:00:00"}, "occurred_from"),
                        ({"query": "k", "occurred_from": "2026-11-30T10:00:00Z",
                          "occurred_to": "2026-11-30T09:00:00Z"}, "occurred_to")):
        r = await admin.post("/search", json=body)
        assert r.status_code == 422, body
        assert [e["field"] for e in r.json()["errors"]] == [field], r.text
    r = await admin.post("/search/documents", json={"title": "  ", "body": "b"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "title"


# --- model change, stats, readiness ------------------------------------------------------------------


async def test_model_change_reembeds_through_a_job(session, org, client) -> None:
    patient = await make_patient(session, org)
    conv, _ = await conversation_with(session, org.id, patient.id, KNEE)
    old = FixedEmbedder({})
    await service.index_conversation(session, system(org.id), conv.id, old, CONFIG)
    [row] = await chunks_of(session, org.id, source_id=conv.id)
    assert row.model == "fixed-test"
    stats = (await client.get("/search/stats")).json()
    assert stats["stale"] == 1 and stats["by_model"] == {"fixed-test": 1}
    # vectors of another model are never compared with the query's: only the text side finds it
    [hit] = await search(session, org, "knee swollen painful since new medication")
    assert hit.vector_rank is None and hit.text_rank == 1
    await jobs.defer(session, "vector.reembed")
    await jobs.run_due(session)
    [row] = await chunks_of(session, org.id, source_id=conv.id)
    assert row.model == "hashing-v1"
    stats = (await client.get("/search/stats")).json()
    assert stats["stale"] == 0 and stats["by_source_type"] == {"conversation": 1}
    [hit] = await search(session, org, "knee swollen painful since new medication")
    assert hit.vector_rank == 1


async def test_ready_says_search_quality(client) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200
    assert r.json()["search"] == {"model": "hashing-v1", "dimensions": 384, "quality": "lexical"}


async def test_rolled_back_message_queues_no_indexing(session, org) -> None:
    """Indexing jobs are queued in the publisher's transaction: a rolled-back event leaves none."""
    from prm.core import events

    count = text("SELECT count(*) FROM procrastinate_jobs WHERE task_name LIKE 'vector.%' AND args->>'org_id' = :o")
    before = await session.scalar(count, {"o": str(org.id)})
    savepoint = await session.begin_nested()
    await events.publish(session, events.Event(type="message.received", org_id=org.id,
                                               payload={"communication_id": str(uuid.uuid4())}))
    await savepoint.rollback()
    await jobs.run_due(session)
    after = await session.scalar(count, {"o": str(org.id)})
    assert after == before
    assert await session.scalar(select(func.count()).select_from(EventRecord).where(EventRecord.org_id == org.id)) == 0


# --- recall against exact search ----------------------------------------------------------------------


async def test_hybrid_recall_against_exact_search(session, org, other_org) -> None:
    """On a fixed corpus (1,200 chunks, two organisations, 12 patients), the vector side of the hybrid
    query finds the exact top 10 by cosine: with the tenant filter alone and with a patient filter."""
    rng = random.Random(15)
    centres = [normalise([rng.gauss(0, 1) for _ in range(DIMENSIONS)]) for _ in range(20)]

    def near(centre: list[float]) -> list[float]:
        return normalise([c + rng.gauss(0, 0.08) for c in centre])

    people = {o.id: [await make_patient(session, o) for _ in range(6)] for o in (org, other_org)}
    vectors: dict[tuple[uuid.UUID, uuid.UUID], list[float]] = {}
    rows = []
    for i in range(1200):
        owner = org if i % 3 else other_org
        patient = people[owner.id][(i // 3) % 6]
        vector = near(centres[i % 20])
        chunk_id = uuid.uuid4()
        vectors[(owner.id, chunk_id)] = vector
        rows.append(SearchChunk(id=chunk_id, org_id=owner.id, patient_id=patient.id, source_type="message",
                                source_id=uuid.uuid4(), ordinal=0, channel="email", occurred_at=T0,
                                text=f"note {i}", citation={}, content_hash=str(i), model="fixed-test",
                                embedding=vector))
    session.add_all(rows)
    await session.flush()
    owned = {cid: (row.patient_id, vectors[(org.id, cid)]) for row in rows if row.org_id == org.id
             for cid in [row.id]}
    recalls = []
    no_threshold = service.SearchConfig(min_similarity=-1)  # exact top 10 includes far chunks too
    for q in range(10):
        query_vector = near(centres[q])
        embedder = FixedEmbedder({f"query{q}": query_vector})
        for patient_filter in (None, people[org.id][q % 6].id):
            candidates = [(cosine_similarity(query_vector, v), cid) for cid, (pid, v) in owned.items()
                          if patient_filter is None or pid == patient_filter]
            exact = {cid for _, cid in sorted(candidates, reverse=True)[:10]}
            hits = await service.hybrid_search(session, org.id, f"query{q}", SearchFilters(patient_id=patient_filter),
                                               embedder=embedder, config=no_threshold, limit=10)
            assert all(h.text_rank is None for h in hits)
            found = {h.chunk_id for h in hits}
            assert found <= set(owned), "another organisation's chunk was returned"
            recalls.append(len(found & exact) / len(exact))
    assert sum(recalls) / len(recalls) >= 0.95, recalls
