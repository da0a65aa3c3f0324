"""Hybrid search benchmark: 100,000 generated 384-d chunks, the one-statement RRF query, recall, and
the origin system's method (embeddings stored as JSON, cosine in Python) side by side.

    PYTHONPATH=src python benchmarks/vector_search.py [--chunks 100000] [--queries 200]

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, loads the chunks with
COPY and builds the HNSW index afterwards, then prints:
1. p50/p95 of the hybrid query (vector + full text, RRF) within one organisation, and with a patient
   filter (target p95 <= 20 ms);
2. recall@10 of its vector side against exact search (the same ORDER BY with indexes disabled);
3. the same top-10 by the origin's method, JSON embeddings scored in Python (target >= 100x slower);
4. the query plan, showing the HNSW and GIN indexes in one statement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from prm import modules
from prm.core import embedded
from prm.core import logging as prm_logging
from prm.core.db import Database, libpq_url
from prm.vector import service
from prm.vector.service import SearchConfig, SearchFilters

DIMS = 384
TOPICS = 200
PATIENTS = 2_000
WORDS_PER_TOPIC = 12
ORIGIN_QUERIES = 3


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _migrate(url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parents[1] / "migrations"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [x / n for x in v]


class Corpus:
    """Clustered vectors (topics) with topic words in the text, so both sides have something to find."""

    def __init__(self, seed: int = 42) -> None:
        self.rng = random.Random(seed)
        self.centres = [_unit([self.rng.gauss(0, 1) for _ in range(DIMS)]) for _ in range(TOPICS)]
        self.words = [[f"t{t}w{w}" for w in range(WORDS_PER_TOPIC)] for t in range(TOPICS)]
        self.common = ["appointment", "pain", "medication", "insurance", "follow", "results", "dose", "call"]
        # noise from a pool (two draws per vector): far cheaper than 384 Gaussian draws per chunk
        self.noise = [[self.rng.gauss(0, 1 / math.sqrt(DIMS)) for _ in range(DIMS)] for _ in range(4096)]

    def vector(self, topic: int, noise: float = 1.0) -> list[float]:
        a, b = self.rng.choice(self.noise), self.rng.choice(self.noise)
        return _unit([c + noise * (x - y) for c, x, y in zip(self.centres[topic], a, b, strict=True)])

    def text(self, topic: int) -> str:
        picked = self.rng.sample(self.words[topic], 4) + self.rng.sample(self.common, 3)
        self.rng.shuffle(picked)
        return "Patient: " + " ".join(picked)


class QueryEmbedder:
    """Hands the benchmark's query vectors to the service (the corpus is generated, not embedded)."""

    model = "bench"
    dimensions = DIMS
    lexical_only = False

    def __init__(self) -> None:
        self.vectors: dict[str, list[float]] = {}

    async def embed(self, texts: Any) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


def _load(url: str, org_id: uuid.UUID, other_org: uuid.UUID, count: int, corpus: Corpus) -> list[uuid.UUID]:
    patients = [uuid.uuid4() for _ in range(PATIENTS)]
    with psycopg.connect(url) as conn:
        for oid in (org_id, other_org):
            conn.execute("INSERT INTO organisations (id, name, slug, timezone, is_active) "
                         "VALUES (%s, %s, %s, 'UTC', true)", (oid, "Bench", f"bench-{oid.hex[:10]}"))
        with conn.cursor() as cur, cur.copy(
                "COPY patients (id, org_id, given_name, family_name, gender, preferred_language, tags, status, "
                "is_provisional) FROM STDIN") as copy:
            for i, pid in enumerate(patients):
                copy.write_row((pid, org_id if i % 10 else other_org, "Bench", f"P{i}", "unknown", "en", [],
                                "active", False))
        conn.execute("DROP INDEX ix_search_chunks_embedding_hnsw")
        conn.execute("CREATE TABLE origin_chunks (id uuid PRIMARY KEY, org_id uuid, patient_id uuid, text text, "
                     "embedding_json text)")
        at = datetime(2026, 11, 1, tzinfo=UTC)
        start = time.perf_counter()
        conn.commit()
        with psycopg.connect(url) as origin_conn, conn.cursor() as cur, origin_conn.cursor() as cur2:
            with cur.copy("COPY search_chunks (id, org_id, patient_id, source_type, source_id, ordinal, channel, "
                          "occurred_at, text, citation, content_hash, model, embedding) FROM STDIN") as copy, \
                    cur2.copy("COPY origin_chunks FROM STDIN") as origin:
                for i in range(count):
                    p = corpus.rng.randrange(PATIENTS)
                    owner = org_id if p % 10 else other_org
                    topic = corpus.rng.randrange(TOPICS)
                    vector = corpus.vector(topic)
                    literal = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
                    chunk_id = uuid.uuid4()
                    body = corpus.text(topic)
                    copy.write_row((chunk_id, owner, patients[p], "conversation", uuid.uuid4(), 0, "whatsapp", at,
                                    body, "{}", str(i), "bench", literal))
                    origin.write_row((chunk_id, owner, patients[p], body, json.dumps(vector)))
            origin_conn.commit()
        conn.commit()
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("CREATE INDEX ix_search_chunks_embedding_hnsw ON search_chunks USING hnsw "
                     "(embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)")
        conn.commit()
        built = time.perf_counter() - start
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE search_chunks")
        conn.execute("VACUUM ANALYZE origin_chunks")
        print(f"loaded {count:,} chunks by COPY in {loaded:.1f} s; HNSW index built after in {built:.1f} s")
    return [p for i, p in enumerate(patients) if i % 10]


async def _run(url: str, count: int, queries: int) -> None:
    corpus = Corpus()
    org_id, other_org = uuid.uuid4(), uuid.uuid4()
    org_patients = _load(libpq_url(url), org_id, other_org, count, corpus)
    db = Database.connect(url, pool_size=2, max_overflow=0)
    embedder = QueryEmbedder()
    config = SearchConfig(candidates_per_side=40, min_similarity=-1)
    qrng = random.Random(7)
    workload = []
    for i in range(queries):
        topic = qrng.randrange(TOPICS)
        words = " ".join(qrng.sample(corpus.words[topic], 2))
        q = f"{words} #{i}"
        embedder.vectors[q] = corpus.vector(topic, noise=0.8)
        workload.append((q, qrng.choice(org_patients)))

    async def timed(with_patient: bool) -> list[float]:
        samples: list[float] = []
        async with db.sessionmaker() as session:
            for n, (q, patient) in enumerate(workload):
                filters = SearchFilters(patient_id=patient if with_patient else None)
                start = time.perf_counter()
                hits = await service.hybrid_search(session, org_id, q, filters, embedder=embedder, config=config)  # type: ignore[arg-type]
                samples.append((time.perf_counter() - start) * 1000)
                assert hits or with_patient
                if n % 20 == 19:
                    await session.rollback()
            await session.rollback()
        return samples

    print(f"PostgreSQL {psycopg.connect(libpq_url(url)).info.server_version}, {count:,} chunks, "
          f"{TOPICS} topics, {PATIENTS:,} patients, 2 organisations (90 % / 10 %)")
    await timed(False)  # warm the caches
    async with db.sessionmaker() as session:  # the noise floor of this machine: one round trip
        trips = []
        for _ in range(queries):
            start = time.perf_counter()
            await session.execute(text("SELECT 1"))
            trips.append((time.perf_counter() - start) * 1000)
    p50, p95 = _percentiles(trips)
    print(f"{'round trip (SELECT 1), for reference':<40} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms")
    for label, with_patient in (("hybrid query, organisation filter", False), ("hybrid query, + patient filter", True)):
        p50, p95 = _percentiles(await timed(with_patient))
        print(f"{label:<40} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   ({queries} runs) "
              f"{'ok' if p95 <= 20 else 'SLOW'}")

    # recall@10 of the vector side against exact search (sequential scan, no index)
    exact_sql = text("SELECT id FROM search_chunks c WHERE c.org_id = :org AND (CAST(:patient AS uuid) IS NULL "
                     "OR c.patient_id = :patient) ORDER BY c.embedding <=> CAST(:v AS vector) LIMIT 10")
    for label, with_patient in (("recall@10, organisation filter", False), ("recall@10, + patient filter", True)):
        recalls = []
        async with db.sessionmaker() as session:
            for q, patient in workload[:50]:
                pid = patient if with_patient else None
                hits = await service.hybrid_search(session, org_id, q, SearchFilters(patient_id=pid),
                                                   embedder=embedder, config=config)  # type: ignore[arg-type]
                found = {h.chunk_id for h in hits if h.vector_rank is not None and h.vector_rank <= 10}
                await session.execute(text("SET LOCAL enable_indexscan = off"))
                await session.execute(text("SET LOCAL enable_bitmapscan = off"))
                exact = set((await session.execute(exact_sql, {"org": org_id, "patient": pid,
                                                               "v": str(embedder.vectors[q])})).scalars())
                await session.rollback()
                if exact:
                    recalls.append(len(found & exact) / len(exact))
        mean = sum(recalls) / len(recalls)
        print(f"{label:<40} {mean:.3f}   ({len(recalls)} queries) {'ok' if mean >= 0.95 else 'LOW'}")

    # the origin's method: every embedding of the organisation as JSON, cosine in Python
    origin_ms = []
    with psycopg.connect(libpq_url(url)) as conn:
        for q, _ in workload[:ORIGIN_QUERIES]:
            start = time.perf_counter()
            qv = embedder.vectors[q]
            scored = []
            for chunk_id, raw in conn.execute("SELECT id, embedding_json FROM origin_chunks WHERE org_id = %s",
                                              (org_id,)):
                v = json.loads(raw)
                dot = sum(a * b for a, b in zip(qv, v, strict=True))
                scored.append((dot / (math.sqrt(sum(b * b for b in v)) or 1), chunk_id))
            scored.sort(reverse=True)
            _ = scored[:10]
            origin_ms.append((time.perf_counter() - start) * 1000)
    origin_p50 = statistics.median(origin_ms)
    async with db.sessionmaker() as session:
        ours = []
        for q, _ in workload[:50]:
            start = time.perf_counter()
            await service.hybrid_search(session, org_id, q, SearchFilters(), embedder=embedder, config=config)  # type: ignore[arg-type]
            ours.append((time.perf_counter() - start) * 1000)
        await session.rollback()
    ours_p50 = statistics.median(ours)
    print(f"{'origin method (JSON + Python cosine)':<40} p50 {origin_p50:9.1f} ms   "
          f"({ORIGIN_QUERIES} runs, vector only)")
    print(f"{'speed-up of the hybrid query':<40} {origin_p50 / ours_p50:9.0f}x   "
          f"{'ok' if origin_p50 / ours_p50 >= 100 else 'LOW'}")

    async with db.sessionmaker() as session:
        q, _ = workload[0]
        params: dict[str, Any] = {"org_id": org_id, "q": q, "qvec": str(embedder.vectors[q]), "model": "bench",
                                  "k_vec": 40, "k_text": 40, "max_dist": 2, "rrf_k": 60, "limit": 10, "headline": ""}
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        plan = [r[0] for r in await session.execute(text("EXPLAIN " + service.hybrid_sql("c.org_id = :org_id")),
                                                        params)]
        used = [name for name in ("ix_search_chunks_embedding_hnsw", "ix_search_chunks_tsv")
                if any(name in line for line in plan)]
        print(f"indexes in the one statement's plan: {', '.join(used) or 'none'}")
    await db.dispose()


def main() -> None:
    prm_logging.configure("WARNING", json=False)
    modules.load()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = embedded.start(Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True)
    _migrate(url)
    asyncio.run(_run(url, args.chunks, args.queries))


if __name__ == "__main__":
    main()
