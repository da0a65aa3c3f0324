"""Search API: hybrid search over conversations, calls, tickets and clinic documents; documents."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response

from prm.adapters import embeddings
from prm.context import AppContext, Context
from prm.core.auth import Principal, Requires
from prm.core.db import Session
from prm.core.pagination import Page, Paging
from prm.vector import service
from prm.vector.schemas import (
    DocumentCreate,
    DocumentDetail,
    DocumentRead,
    PatientSearchRequest,
    SearchHitRead,
    SearchRequest,
    SearchResponse,
    SearchStatsRead,
)

router = APIRouter(prefix="/search", tags=["search"])
patient_router = APIRouter(prefix="/patients", tags=["search"])
routers = [router, patient_router]


def _runtime(ctx: Context) -> tuple[embeddings.Embedder, service.SearchConfig]:
    return ctx.adapters.embedder(), service.SearchConfig.from_settings(ctx.settings)


def _response(hits: list[service.Hit], embedder: embeddings.Embedder) -> SearchResponse:
    items = [SearchHitRead(**{k: getattr(h, k) for k in SearchHitRead.model_fields if k != "link"}, link=h.link)
             for h in hits]
    return SearchResponse(items=items, model=embedder.model, quality=embeddings.describe(embedder)["quality"])


def _filters(body: Any, patient_id: uuid.UUID | None) -> service.SearchFilters:
    return service.SearchFilters(patient_id=patient_id, source_types=tuple(body.source_types),
                                 channels=tuple(body.channels), occurred_from=body.occurred_from,
                                 occurred_to=body.occurred_to)


@router.post("", response_model=SearchResponse, summary="Hybrid search (meaning and words) across the clinic",
             description="One SQL statement ranks chunks by vector similarity and by full text "
                         "(`websearch_to_tsquery`: \"a phrase\", -excluded, or) and fuses both rankings by "
                         "reciprocal rank fusion. An empty or meaningless query returns no items. "
                         "Audited as a read of patient data.")
async def search(body: SearchRequest, ctx: AppContext, session: Session,
                 who: Principal = Requires("search:read")) -> SearchResponse:
    embedder, config = _runtime(ctx)
    hits = await service.search(session, who, body.query, _filters(body, body.patient_id), embedder=embedder,
                                config=config, limit=body.limit)
    return _response(hits, embedder)


@patient_router.post("/{patient_id}/search", response_model=SearchResponse,
                     summary="Hybrid search within one patient's conversations, calls and tickets")
async def search_patient(patient_id: uuid.UUID, body: PatientSearchRequest, ctx: AppContext, session: Session,
                         who: Principal = Requires("search:read", "patients:read")) -> SearchResponse:
    embedder, config = _runtime(ctx)
    hits = await service.search(session, who, body.query, _filters(body, patient_id), embedder=embedder,
                                config=config, limit=body.limit, patient_in_path=True)
    return _response(hits, embedder)


@router.get("/stats", response_model=SearchStatsRead, summary="What is indexed, by which model")
async def stats(ctx: AppContext, session: Session, who: Principal = Requires("search:read")) -> SearchStatsRead:
    embedder, _ = _runtime(ctx)
    s = await service.stats(session, who, model=embedder.model)
    return SearchStatsRead(**s.__dict__, quality=embeddings.describe(embedder)["quality"])


@router.post("/documents", status_code=201, response_model=DocumentRead,
             summary="Add a clinic knowledge document (indexed in the background)")
async def create_document(body: DocumentCreate, response: Response, session: Session,
                          who: Principal = Requires("search:write")) -> Any:
    document = await service.create_document(session, who, title=body.title, body=body.body)
    response.headers["Location"] = f"/search/documents/{document.id}"
    return document


@router.get("/documents", response_model=Page[DocumentRead], summary="Clinic knowledge documents")
async def list_documents(paging: Paging, session: Session, who: Principal = Requires("search:read")) -> Any:
    rows, total = await service.list_documents(session, who, limit=paging.limit, offset=paging.offset)
    return Page[DocumentRead](items=[DocumentRead.model_validate(r) for r in rows], total=total,
                              limit=paging.limit, offset=paging.offset)


@router.get("/documents/{document_id}", response_model=DocumentDetail, summary="One document")
async def get_document(document_id: uuid.UUID, session: Session, who: Principal = Requires("search:read")) -> Any:
    return await service.get_document(session, who, document_id)


@router.delete("/documents/{document_id}", status_code=204, summary="Delete a document and its chunks")
async def delete_document(document_id: uuid.UUID, session: Session,
                          who: Principal = Requires("search:write")) -> Response:
    await service.delete_document(session, who, document_id)
    return Response(status_code=204)
