"""Patient search at scale: 100,000 synthetic patients loaded with COPY, then p50/p95 of

* fuzzy name search (`GET /patients?q=...`: trigram, accent-insensitive, ranked, counted, one page),
* phone search in a national/international format (`GET /patients?phone=...`),
* duplicate detection on create (`find_duplicates` for a new record; and the whole `create`).

Aim: p95 under 30 ms each. Runs on its own throwaway embedded PostgreSQL (or DATABASE_URL):

    PYTHONPATH=src python benchmarks/patients_search.py [--patients 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config

from prm import context, modules
from prm.core import embedded
from prm.core import logging as prm_logging
from prm.core.auth import Principal
from prm.core.db import Database
from prm.core.pagination import PageParams
from prm.patients import duplicates, service
from prm.patients.schemas import PatientCreate
from prm.settings import Settings

GIVEN = [
    "José",
    "María",
    "Lucía",
    "Ana",
    "Juan",
    "Carlos",
    "Sofía",
    "Martín",
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amara",
    "Mohammed",
    "Zoë",
    "Chloé",
    "François",
    "Søren",
    "Björn",
    "Aoife",
    "Siobhán",
    "Łukasz",
    "Ines",
    "Mateo",
    "Valentina",
    "Hugo",
    "Elena",
    "Pablo",
    "Grace",
    "Ethan",
    "Aisha",
    "Yusuf",
    "Mei",
    "Hiroshi",
    "Priya",
    "Arjun",
    "Fatima",
    "Omar",
    "Isabella",
    "Lorenzo",
    "Giulia",
    "Jakub",
    "Anna",
    "Ewa",
    "Nils",
    "Ingrid",
    "Kwame",
    "Ama",
    "Thabo",
    "Lerato",
]
FAMILY = [
    "García",
    "Núñez",
    "Rodríguez",
    "Martínez",
    "López",
    "Pérez",
    "Sánchez",
    "Gómez",
    "Fernández",
    "Díaz",
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Miller",
    "Davis",
    "Wilson",
    "Taylor",
    "Anderson",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Dubois",
    "Lefèvre",
    "Moreau",
    "Laurent",
    "Okafor",
    "Mensah",
    "Nkosi",
    "Rahman",
    "Khan",
    "Patel",
    "Singh",
    "Nakamura",
    "Tanaka",
    "Wang",
    "Li",
    "Zhang",
    "Kowalski",
    "Nowak",
    "Johansson",
    "O'Connor",
    "Murphy",
    "Kelly",
    "Byrne",
    "Walsh",
    "Ryan",
    "Ivanov",
    "Petrov",
    "Horvat",
    "Novák",
    "Svoboda",
]


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def _migrate(url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parents[1] / "migrations"))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")


def _phone(i: int) -> str:
    return f"+346{i + 10_000_000:08d}"  # unique Spanish mobiles: +34 6xx xxx xxx


def _load(url: str, org_id: uuid.UUID, count: int, rng: random.Random) -> None:
    """COPY `count` patients with phones (all) and emails (half) into a fresh organisation."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO organisations (id, name, slug, timezone, is_active) VALUES (%s, %s, %s, 'UTC', true)",
            (org_id, "Benchmark Clinic", f"bench-{org_id.hex[:8]}"),
        )
        start = time.perf_counter()
        ids = [uuid.uuid4() for _ in range(count)]
        with conn.cursor() as cur:
            with cur.copy(
                "COPY patients (id, org_id, given_name, family_name, birth_date, gender, "
                "preferred_language, tags, status, is_provisional, primary_phone, primary_email) "
                "FROM STDIN"
            ) as copy:
                for i, pid in enumerate(ids):
                    given = rng.choice(GIVEN)
                    family = rng.choice(FAMILY) + (f" {rng.choice(FAMILY)}" if rng.random() < 0.4 else "")
                    born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 94 * 365))
                    email = f"p{i}@example.org" if i % 2 == 0 else None
                    copy.write_row(
                        (
                            pid,
                            org_id,
                            given,
                            family,
                            born,
                            rng.choice(["male", "female"]),
                            "en",
                            [],
                            "active",
                            False,
                            _phone(i),
                            email,
                        )
                    )
            with cur.copy("COPY patient_phones (id, org_id, patient_id, number, kind, is_primary) FROM STDIN") as copy:
                for i, pid in enumerate(ids):
                    copy.write_row((uuid.uuid4(), org_id, pid, _phone(i), "mobile", True))
            with cur.copy("COPY patient_emails (id, org_id, patient_id, email, kind, is_primary) FROM STDIN") as copy:
                for i, pid in enumerate(ids):
                    if i % 2 == 0:
                        copy.write_row((uuid.uuid4(), org_id, pid, f"p{i}@example.org", "personal", True))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE patients")
        conn.execute("VACUUM ANALYZE patient_phones")
        conn.execute("VACUUM ANALYZE patient_emails")
        conn.execute("VACUUM ANALYZE patient_name_words")  # filled by the trigger during the COPY
        conn.execute("VACUUM ANALYZE patient_name_terms")
        print(f"loaded {count:,} patients (COPY + VACUUM ANALYZE) in {time.perf_counter() - start:.1f} s")


async def _time(name: str, db: Database, queries: int, fn: Callable[[Any, int], Awaitable[Any]]) -> None:
    samples = []
    async with db.sessionmaker() as session:
        for i in range(5):  # warm up
            await fn(session, i)
        for i in range(queries):
            start = time.perf_counter()
            await fn(session, i)
            samples.append((time.perf_counter() - start) * 1000)
            if i % 20 == 19:
                await session.rollback()  # drop the audit rows and anything created
        await session.rollback()
    p50, p95 = _percentiles(samples)
    flag = "ok" if p95 < 30 else "SLOW"
    print(f"{name:<44} p50 {p50:7.2f} ms   p95 {p95:7.2f} ms   ({queries} runs) {flag}")


async def _run(url: str, count: int, queries: int) -> None:
    rng = random.Random(42)
    org_id = uuid.uuid4()
    _load(url, org_id, count, rng)
    db = Database.connect(url, pool_size=2, max_overflow=0)
    context.bind(db.sessionmaker, context.Context.build(Settings(database_url=url)))
    who = Principal.system(org_id)
    page = PageParams(limit=20, offset=0)

    def fuzzy(i: int) -> str:
        r = random.Random(i)
        given, family = r.choice(GIVEN), r.choice(FAMILY)
        options = [
            f"{given} {family}",
            family.lower(),
            f"{family} {given}",
            (family[:-1] + "z").lower(),  # a typo
            f"{given[:3]} {family}",
        ]
        return options[i % len(options)]

    async def name_search(session: Any, i: int) -> None:
        await service.search(session, who, service.Filters(q=fuzzy(i)), page)

    async def phone_search(session: Any, i: int) -> None:
        n = random.Random(i).randrange(count)
        digits = _phone(n)[3:]
        raw = f"0034 {digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
        rows, _ = await service.search(session, who, service.Filters(phone=raw), page)
        assert len(rows) == 1

    def new_person(i: int) -> PatientCreate:
        r = random.Random(10_000 + i)
        born = date(1930, 1, 1) + timedelta(days=r.randrange(0, 94 * 365))
        n = r.randrange(count * 2)  # half of the phones exist already
        return PatientCreate(
            given_name=r.choice(GIVEN),
            family_name=r.choice(FAMILY),
            birth_date=born,
            phones=[{"number": _phone(n)}],  # type: ignore[list-item]
            emails=[{"email": f"p{n}@example.org"}],
        )  # type: ignore[list-item]

    async def detect(session: Any, i: int) -> None:
        data = new_person(i)
        facts = duplicates.Facts.of(
            data.given_name,
            data.family_name,
            data.birth_date,
            [p.number for p in data.phones],
            [e.email for e in data.emails],
        )
        await service.find_duplicates(session, org_id, facts)

    async def create(session: Any, i: int) -> None:
        await service.create(session, who, new_person(i))

    print(f"PostgreSQL {psycopg.connect(url).info.server_version}, {count:,} patients, 1 organisation")
    await _time("fuzzy name search (q=..., page of 20 + total)", db, queries, name_search)
    await _time("phone search (any format)", db, queries, phone_search)
    await _time("duplicate detection for a new patient", db, queries, detect)
    await _time("create incl. duplicate detection", db, queries, create)
    await db.dispose()


def main() -> None:
    prm_logging.configure("WARNING", json=False)
    modules.load()  # every domain's tables, so the ORM knows them all
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        url = embedded.start(Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True)
    _migrate(url)
    asyncio.run(_run(url, args.patients, args.queries))


if __name__ == "__main__":
    main()
