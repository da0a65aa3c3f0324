"""Documentation and examples of semantic search and knowledge documents (see docs/api-examples.md
and docs/search.md)."""

from __future__ import annotations

from prm.core.apidocs import Op, not_found

NOT_FOUND = not_found("document", "document_not_found", "Document")
DOCUMENT = {"title": "Preparing for a dental cleaning",
            "body": "Brush and floss as usual before your visit. Eat normally; no fasting is needed. If you "
                    "take blood thinners, tell us when you book. The cleaning takes about 30 minutes and "
                    "costs 60 EUR; most insurers cover one a year."}

OPERATIONS = {
    "POST /search": Op(
        body={"query": "does the patient need to fast before the cleaning?", "source_types": ["message", "document"],
              "occurred_from": "2026-01-01T00:00:00Z", "limit": 5}, given=["document"]),
    "GET /search/stats": Op("How many chunks are indexed per source type, and with which embedding model."),
    "POST /search/documents": Op(
        "Adds a knowledge document (prices, preparation, policies) that search and the assistants can cite; it is "
        "chunked and embedded in the background.", body=DOCUMENT),
    "GET /search/documents": Op("The clinic's knowledge documents, newest first.", given=["document"]),
    "GET /search/documents/{document_id}": Op(),
    "DELETE /search/documents/{document_id}": Op(),
    "POST /patients/{patient_id}/search": Op(
        body={"query": "appointment change", "source_types": ["message", "ticket"], "limit": 5},
        given=["ticket"]),
}
