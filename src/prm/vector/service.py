"""Semantic search: storing chunks with their vectors, and the hybrid query. The published interface.

* Indexing (`index_*`) runs in jobs driven by events (see `subscribers.py`, `tasks.py`): a source
  is cut into chunks (`sources`, `chunking`), the chunks whose text did not change keep their
  vectors, the others are embedded, and the source's rows are replaced. Patient data is indexed
  only while the patient's `ai_processing` consent allows it; `remove_patient` deletes it all.
* `search` is ONE SQL statement: the nearest chunks by cosine distance (HNSW) and the best
  full-text matches (`websearch_to_tsquery`, GIN), each ranked, fused by reciprocal rank fusion
  (`1 / (k + rank)` summed), with `ts_headline` snippets. `hnsw.iterative_scan = relaxed_order`
  keeps the vector side's recall when filters (organisation, patient, source, channel, dates)
  discard most of the index's nearest rows.
"""

from __future__ import annotations

import hashlib
import html
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from prm.adapters.embeddings import Embedder, tokens
from prm.core import audit, clock, jobs
from prm.core.auth import Principal
from prm.core.errors import NotFound, ValidationFailed
from prm.patients import service as patients
from prm.vector import chunking, sources
from prm.vector.models import SOURCE_TYPES, TEXT_CONFIG, SearchChunk, SearchDocument

log = structlog.get_logger(__name__)

CONSENT_PURPOSE = "ai_processing"
_MARK_START, _MARK_STOP = "\x02", "\x03"
HEADLINE_OPTIONS = (f"StartSel={_MARK_START}, StopSel={_MARK_STOP}, MaxWords=35, MinWords=12, MaxFragments=2, "
                    'FragmentDelimiter=" … "')


@dataclass(frozen=True)
class SearchConfig:
    """The tuning of indexing and search (from settings; see docs/search.md)."""

    candidates_per_side: int = 40
    rrf_k: int = 60
    min_similarity: float = 0.2
    chunk_gap_minutes: int = 30
    chunk_max_chars: int = 1200

    @classmethod
    def from_settings(cls, settings: Any) -> SearchConfig:
        return cls(candidates_per_side=settings.search_candidates_per_side, rrf_k=settings.search_rrf_k,
                   min_similarity=settings.search_min_similarity, chunk_gap_minutes=settings.search_chunk_gap_minutes,
                   chunk_max_chars=settings.search_chunk_max_chars)

    @property
    def chunking(self) -> sources.Chunking:
        return sources.Chunking(gap=timedelta(minutes=self.chunk_gap_minutes), max_chars=self.chunk_max_chars)


def content_hash(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()


# --- storing -----------------------------------------------------------------------------------------


async def _consented(session: AsyncSession, org_id: uuid.UUID, patient_id: uuid.UUID | None) -> bool:
    if patient_id is None:
        return True
    try:
        decision = await patients.data_sharing_allows(session, org_id, patient_id, purpose=CONSENT_PURPOSE)
    except NotFound:
        return False
    return decision.allowed


async def _delete_source(session: AsyncSession, org_id: uuid.UUID, source_type: str, source_id: uuid.UUID) -> int:
    result = await session.execute(delete(SearchChunk).where(
        SearchChunk.org_id == org_id, SearchChunk.source_type == source_type, SearchChunk.source_id == source_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def store(session: AsyncSession, who: Principal, source: sources.Source, embedder: Embedder) -> int:
    """Replace the chunks of `source` (keeping the vectors of unchanged text); returns how many are stored.

    A source of a patient whose consent does not allow AI processing is removed instead.
    """
    org_id = who.org_id
    if not await _consented(session, org_id, source.patient_id):
        await _delete_source(session, org_id, source.source_type, source.source_id)
        return 0
    existing = (await session.execute(
        select(SearchChunk.content_hash, SearchChunk.embedding).where(
            SearchChunk.org_id == org_id, SearchChunk.source_type == source.source_type,
            SearchChunk.source_id == source.source_id, SearchChunk.model == embedder.model)
    )).all()
    known = {h: list(e) for h, e in existing}
    chunks = [c for c in source.chunks if c.text.strip()]
    hashes = [content_hash(c.text) for c in chunks]
    missing = [c.text for c, h in zip(chunks, hashes, strict=True) if h not in known]
    fresh = await embedder.embed(missing) if missing else []
    for text_, vector in zip(missing, fresh, strict=True):
        known[content_hash(text_)] = vector
    await _delete_source(session, org_id, source.source_type, source.source_id)
    now = clock.now()
    for c, h in zip(chunks, hashes, strict=True):
        session.add(SearchChunk(
            org_id=org_id, patient_id=source.patient_id, source_type=source.source_type, source_id=source.source_id,
            ordinal=c.ordinal, channel=source.channel, occurred_at=c.occurred_at or source.occurred_at, text=c.text,
            citation={**c.citation(), **source.citation}, content_hash=h, model=embedder.model,
            embedding=known[h], created_at=now, embedded_at=now,
        ))
    await session.flush()
    return len(chunks)


async def index_communication(session: AsyncSession, who: Principal, communication_id: uuid.UUID,
                              embedder: Embedder, config: SearchConfig) -> int:
    """Index the source a message belongs to (its conversation, call transcript or email).

    Raises `sources.NotRoutedYet` when an inbound WhatsApp/SMS message has no conversation yet.
    """
    source = await sources.communication(session, who.org_id, communication_id, config.chunking)
    return 0 if source is None else await store(session, who, source, embedder)


async def index_conversation(session: AsyncSession, who: Principal, conversation_id: uuid.UUID,
                             embedder: Embedder, config: SearchConfig) -> int:
    source = await sources.conversation(session, who.org_id, conversation_id, config.chunking)
    return 0 if source is None else await store(session, who, source, embedder)


async def index_ticket(session: AsyncSession, who: Principal, ticket_id: uuid.UUID, embedder: Embedder,
                       config: SearchConfig) -> int:
    """Index a ticket's subject and description and each comment (internal notes too)."""
    stored = 0
    found = await sources.ticket(session, who.org_id, ticket_id, config.chunking)
    for source in found:
        stored += await store(session, who, source, embedder)
    if found:  # comments deleted since the last run
        keep = [s.source_id for s in found if s.source_type == "ticket_comment"]
        await session.execute(delete(SearchChunk).where(
            SearchChunk.org_id == who.org_id, SearchChunk.source_type == "ticket_comment",
            SearchChunk.citation["ticket_id"].astext == str(ticket_id), SearchChunk.source_id.not_in(keep)))
    return stored


async def remove_patient(session: AsyncSession, who: Principal, patient_id: uuid.UUID, *, reason: str) -> int:
    """Delete every chunk of a patient (consent withdrawn, patient deleted); audited."""
    result = await session.execute(delete(SearchChunk).where(
        SearchChunk.org_id == who.org_id, SearchChunk.patient_id == patient_id))
    removed = int(getattr(result, "rowcount", 0) or 0)
    await audit.record(session, who, "delete", "search_chunks", None, patient_id=patient_id,
                       details={"removed": removed, "reason": reason})
    log.info("search.patient_removed", patient_id=str(patient_id), removed=removed, reason=reason)
    return removed


async def reindex_patient(session: AsyncSession, who: Principal, patient_id: uuid.UUID) -> int:
    """Queue the indexing of everything a patient said or was told (consent granted again)."""
    refs = await sources.of_patient(session, who.org_id, patient_id)
    org_id = str(who.org_id)
    for kind, ref in refs:
        if kind == "communication":
            await jobs.defer(session, "vector.index_communication", queueing_lock=f"vector.index_communication:{ref}",
                             org_id=org_id, communication_id=str(ref))
        else:
            await jobs.defer(session, "vector.index_ticket", queueing_lock=f"vector.index_ticket:{ref}",
                             org_id=org_id, ticket_id=str(ref))
    return len(refs)


async def chunks_to_reembed(session: AsyncSession, model: str, *, limit: int) -> list[SearchChunk]:
    """Chunks whose vector came from another model than `model` (any organisation), oldest first."""
    return list(await session.scalars(
        select(SearchChunk).where(SearchChunk.model != model).order_by(SearchChunk.embedded_at, SearchChunk.id)
        .limit(limit).with_for_update(skip_locked=True)))


async def reembed(session: AsyncSession, embedder: Embedder, *, batch: int = 256) -> int:
    """Re-embed up to `batch` chunks stored by another model; returns how many."""
    rows = await chunks_to_reembed(session, embedder.model, limit=batch)
    if not rows:
        return 0
    vectors = await embedder.embed([r.text for r in rows])
    now = clock.now()
    for row, vector in zip(rows, vectors, strict=True):
        row.embedding, row.model, row.embedded_at = vector, embedder.model, now
    await session.flush()
    return len(rows)


# --- documents ---------------------------------------------------------------------------------------


async def create_document(session: AsyncSession, who: Principal, *, title: str, body: str) -> SearchDocument:
    """Store a clinic knowledge document and queue its indexing (in the caller's transaction)."""
    document = SearchDocument(org_id=who.org_id, title=title.strip(), body=body, created_by_kind=who.kind,
                              created_by_id=who.subject_id)
    session.add(document)
    await session.flush()
    await jobs.defer(session, "vector.index_document", org_id=str(who.org_id), document_id=str(document.id))
    await audit.record(session, who, "create", "search_document", document.id, details={"chars": len(body)})
    return document


async def get_document(session: AsyncSession, who: Principal, document_id: uuid.UUID) -> SearchDocument:
    document = await session.scalar(select(SearchDocument).where(
        SearchDocument.org_id == who.org_id, SearchDocument.id == document_id))
    if document is None:
        raise NotFound(f"Document {document_id} not found", code="document_not_found")
    return document


async def list_documents(session: AsyncSession, who: Principal, *, limit: int, offset: int
                         ) -> tuple[list[SearchDocument], int]:
    base = select(SearchDocument).where(SearchDocument.org_id == who.org_id)
    total = await session.scalar(select(func.count()).select_from(base.subquery()))
    rows = await session.scalars(base.order_by(SearchDocument.created_at.desc(), SearchDocument.id)
                                 .limit(limit).offset(offset))
    return list(rows), int(total or 0)


async def delete_document(session: AsyncSession, who: Principal, document_id: uuid.UUID) -> None:
    document = await get_document(session, who, document_id)
    await _delete_source(session, who.org_id, "document", document.id)
    await session.delete(document)
    await session.flush()
    await audit.record(session, who, "delete", "search_document", document_id)


async def index_document(session: AsyncSession, who: Principal, document_id: uuid.UUID, embedder: Embedder,
                         config: SearchConfig) -> int:
    document = await session.scalar(select(SearchDocument).where(
        SearchDocument.org_id == who.org_id, SearchDocument.id == document_id))
    if document is None:
        return 0  # deleted before it was indexed
    body = f"{document.title}\n\n{document.body}"
    source = sources.Source("document", document.id, None, None, document.created_at,
                            chunking.chunk_document(body, max_chars=config.chunk_max_chars))
    document.chunk_count = await store(session, who, source, embedder)
    document.indexed_at = clock.now()
    await session.flush()
    return document.chunk_count


# --- searching ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchFilters:
    patient_id: uuid.UUID | None = None
    source_types: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None

    def used(self) -> list[str]:
        return [k for k, v in self.__dict__.items() if v not in (None, ())]


@dataclass(frozen=True)
class Hit:
    chunk_id: uuid.UUID
    source_type: str
    source_id: uuid.UUID
    patient_id: uuid.UUID | None
    channel: str | None
    occurred_at: datetime
    snippet: str
    score: float
    vector_rank: int | None
    text_rank: int | None
    similarity: float | None
    citation: dict[str, Any] = field(default_factory=dict)

    @property
    def link(self) -> str:
        """Where the hit's source can be read through the API."""
        if self.source_type == "conversation":
            return f"/conversations/{self.source_id}"
        if self.source_type in ("voice_call", "message"):
            return f"/communications/{self.source_id}"
        if self.source_type == "ticket":
            return f"/tickets/{self.source_id}"
        if self.source_type == "ticket_comment":
            return f"/tickets/{self.citation.get('ticket_id')}/comments"
        return f"/search/documents/{self.source_id}"


def _filter_sql(f: SearchFilters, params: dict[str, Any]) -> str:
    """Constant SQL fragments with bound values; never query text in the SQL string."""
    parts = ["c.org_id = :org_id"]
    if f.patient_id is not None:
        parts.append("c.patient_id = :patient_id")
        params["patient_id"] = f.patient_id
    if f.source_types:
        parts.append("c.source_type = ANY(CAST(:source_types AS text[]))")
        params["source_types"] = list(f.source_types)
    if f.channels:
        parts.append("c.channel = ANY(CAST(:channels AS text[]))")
        params["channels"] = list(f.channels)
    if f.occurred_from is not None:
        parts.append("c.occurred_at >= :occurred_from")
        params["occurred_from"] = f.occurred_from
    if f.occurred_to is not None:
        parts.append("c.occurred_at < :occurred_to")
        params["occurred_to"] = f.occurred_to
    return " AND ".join(parts)


def hybrid_sql(where: str) -> str:
    """The one statement: vector and full-text candidates, fused by reciprocal rank fusion."""
    tsq = f"websearch_to_tsquery('{TEXT_CONFIG}', :q)"
    return f"""  -- only constant fragments: every value is a bound parameter
WITH vec AS MATERIALIZED (
    SELECT id, dist, row_number() OVER (ORDER BY dist, id) AS rank
    FROM (
        SELECT c.id, c.embedding <=> CAST(:qvec AS vector) AS dist
        FROM search_chunks c
        WHERE {where} AND c.model = :model
        ORDER BY c.embedding <=> CAST(:qvec AS vector)
        LIMIT :k_vec
    ) nearest
    WHERE dist <= :max_dist
),
fts AS MATERIALIZED (
    SELECT c.id, row_number() OVER (ORDER BY ts_rank_cd(c.tsv, {tsq}) DESC, c.id) AS rank
    FROM search_chunks c
    WHERE {where} AND c.tsv @@ {tsq}
    ORDER BY ts_rank_cd(c.tsv, {tsq}) DESC, c.id
    LIMIT :k_text
),
fused AS (
    SELECT coalesce(v.id, f.id) AS id, v.rank AS vector_rank, f.rank AS text_rank, v.dist,
           coalesce(1.0 / (:rrf_k + v.rank), 0) + coalesce(1.0 / (:rrf_k + f.rank), 0) AS score
    FROM vec v FULL JOIN fts f ON v.id = f.id
    ORDER BY score DESC, id
    LIMIT :limit
)
SELECT c.id, c.source_type, c.source_id, c.patient_id, c.channel, c.occurred_at, c.citation,
       fused.vector_rank, fused.text_rank, fused.score, 1 - fused.dist AS similarity,
       ts_headline('{TEXT_CONFIG}', c.text, {tsq}, :headline) AS snippet
FROM fused JOIN search_chunks c ON c.id = fused.id
ORDER BY fused.score DESC, c.id
"""  # noqa: S608


def _snippet(raw: str) -> str:
    """HTML-escaped text with the matched words in <mark> (safe to render: message bodies are user input)."""
    escaped = html.escape(raw.replace("\n", " "))
    return escaped.replace(_MARK_START, "<mark>").replace(_MARK_STOP, "</mark>")


def _vector_literal(vector: list[float]) -> str:
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"


async def hybrid_search(session: AsyncSession, org_id: uuid.UUID, query: str, filters: SearchFilters, *,
                        embedder: Embedder, config: SearchConfig, limit: int = 10) -> list[Hit]:
    """The fused ranking of `query` within `org_id` (no audit: see `search`). Empty query: no hits."""
    q = query.strip()
    if not q or not tokens(q):
        return []
    [vector] = await embedder.embed([q])
    use_vector = any(vector)
    k = config.candidates_per_side
    params: dict[str, Any] = {
        "org_id": org_id, "q": q, "qvec": _vector_literal(vector), "model": embedder.model,
        "k_vec": k if use_vector else 0, "k_text": k, "max_dist": 1 - config.min_similarity,
        "rrf_k": config.rrf_k, "limit": limit, "headline": HEADLINE_OPTIONS,
    }
    where = _filter_sql(filters, params)
    await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    await session.execute(text(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, k))}"))
    rows = (await session.execute(text(hybrid_sql(where)), params)).mappings().all()
    return [
        Hit(chunk_id=r["id"], source_type=r["source_type"], source_id=r["source_id"], patient_id=r["patient_id"],
            channel=r["channel"], occurred_at=r["occurred_at"], snippet=_snippet(r["snippet"] or ""),
            score=float(r["score"]), vector_rank=r["vector_rank"], text_rank=r["text_rank"],
            similarity=float(r["similarity"]) if r["similarity"] is not None else None,
            citation=dict(r["citation"] or {}))
        for r in rows
    ]


async def search(session: AsyncSession, who: Principal, query: str, filters: SearchFilters, *,
                 embedder: Embedder, config: SearchConfig, limit: int = 10, patient_in_path: bool = False
                 ) -> list[Hit]:
    """Hybrid search for a caller; a search that can touch patient data is audited as a PHI read.

    The patient filter follows merges (the survivor holds the chunks). An unknown patient (or one of
    another organisation) is a 404 when it is the path's patient, a 422 on `patient_id` in a body.
    """
    bad = [v for v in filters.source_types if v not in SOURCE_TYPES]
    if bad:
        raise ValidationFailed.field("source_types", f"unknown value(s) {', '.join(bad)}; "
                                                     f"one of {', '.join(SOURCE_TYPES)}")
    if filters.patient_id is not None:
        try:
            patient = await patients.resolve(session, who.org_id, filters.patient_id)
        except NotFound:
            if patient_in_path:
                raise
            raise ValidationFailed.field("patient_id", "no such patient in this organisation") from None
        filters = replace(filters, patient_id=patient.id)
    hits = await hybrid_search(session, who.org_id, query, filters, embedder=embedder, config=config, limit=limit)
    patient_ids = sorted({str(h.patient_id) for h in hits if h.patient_id is not None})
    await audit.record(session, who, "search", "search_chunks", None, patient_id=filters.patient_id,
                       details={"filters": filters.used(), "hits": len(hits), "patient_ids": patient_ids})
    return hits


# --- stats -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    chunks: int
    patients: int
    documents: int
    by_source_type: dict[str, int]
    by_model: dict[str, int]
    model: str
    stale: int  # chunks embedded by another model, waiting for vector.reembed


async def stats(session: AsyncSession, who: Principal, *, model: str) -> Stats:
    org = SearchChunk.org_id == who.org_id
    by_type = {str(k): int(n) for k, n in await session.execute(
        select(SearchChunk.source_type, func.count()).where(org).group_by(SearchChunk.source_type))}
    by_model = {str(k): int(n) for k, n in await session.execute(
        select(SearchChunk.model, func.count()).where(org).group_by(SearchChunk.model))}
    patients_n = await session.scalar(select(func.count(func.distinct(SearchChunk.patient_id))).where(org))
    documents = await session.scalar(select(func.count()).select_from(SearchDocument)
                                     .where(SearchDocument.org_id == who.org_id))
    total = sum(by_type.values())
    return Stats(chunks=total, patients=int(patients_n or 0), documents=int(documents or 0),
                 by_source_type=by_type, by_model=by_model, model=model,
                 stale=total - by_model.get(model, 0))
