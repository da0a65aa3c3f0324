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
        body={"query": "blood thinners before a dental cleaning", "source_types": ["document", "message"],
              "limit": 5}, given=["document", "jobs_run"]),
    "GET /search/stats": Op("How many chunks are indexed per source type, and with which embedding model."),
    "POST /search/documents": Op(
        "Adds a knowledge document (prices, preparation, policies) that search and the assistants can cite; it is "
        "chunked and embedded in the background.", body=DOCUMENT),
    "GET /search/documents": Op("The clinic's knowledge documents, newest first.", given=["document"]),
    "GET /search/documents/{document_id}": Op(
        "One knowledge document with its text and indexing status (chunks and embedding model)."),
    "DELETE /search/documents/{document_id}": Op(
        "Deletes the document and its indexed chunks; search stops finding it at once."),
    "POST /patients/{patient_id}/search": Op(
        "Hybrid search (meaning and words) within one patient's messages, calls, conversations and tickets, "
        "best first, each hit with its source and a snippet. Needs both search and patient read scopes.",
        body={"query": "call back about the invoice", "source_types": ["message", "ticket"], "limit": 5},
        given=["ticket", "jobs_run"]),
}
