"""Patient search at scale: synthetic patients with realistic name frequencies loaded with COPY, then

* fuzzy name search (`GET /patients?q=...`: accent-insensitive, ranked, counted, one page of 20),
  in rounds, each query followed by the naive alternative (a seq-scan `ILIKE` of the same words,
  page + total): p50/p95 of both and their ratio, median and min-max over rounds (issue #19 aims at
  p95 <= 10 ms at 100k, <= 30 ms at 1M, >= 10x faster than the seq scan);
* phone search in a national/international format (`GET /patients?phone=...`),
* duplicate detection on create (`find_duplicates` for a new record; and the whole `create`).

Names follow a Zipf-like frequency (the commonest surnames on ~1 % of patients each, a long generated
tail, accents, double surnames, compound given names); queries mix full names, common surnames,
prefixes as typed so far, and typos. Runs on its own throwaway embedded PostgreSQL (or DATABASE_URL):

    PYTHONPATH=src python benchmarks/patients_search.py [--patients 100000] [--queries 140] [--rounds 5]
    PYTHONPATH=src python benchmarks/patients_search.py --patients 100000 1000000 --explain   # ~15 minutes

Each size runs in a database of its own; the last lines sum up the whole `service.search` call at
every size (p50/p95, the seq-scan ratio, statements per call, the load while it ran).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from urllib.parse import urlsplit, urlunsplit

import psycopg
from alembic import command
from alembic.config import Config
from sqlalchemy import event

from prm import context, modules
from prm.core import embedded
from prm.core import logging as prm_logging
from prm.core.auth import Principal
from prm.core.db import Database
from prm.core.pagination import PageParams
from prm.patients import duplicates, names, search, service
from prm.patients.schemas import PatientCreate
from prm.settings import Settings

# The commonest names first (the head of a Zipf-like distribution); a generated long tail follows.
FAMILY_HEAD = [
    "García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Smith", "Gómez",
    "Martín", "Jiménez", "Müller", "Ruiz", "Hernández", "Díaz", "Moreno", "Johnson", "Álvarez", "Muñoz", "Romero",
    "Alonso", "Gutiérrez", "Navarro", "Williams", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Ramírez",
    "Serrano", "Blanco", "Brown", "Molina", "Morales", "Suárez", "Ortega", "Delgado", "Castro", "Ortiz", "Rubio",
    "Marín", "Sanz", "Núñez", "Iglesias", "Medina", "Garrido", "Cortés", "Castillo", "Santos", "Lozano", "Guerrero",
    "Cano", "Prieto", "Méndez", "Cruz", "Calvo", "Gallego", "Vidal", "León", "Márquez", "Herrera", "Peña", "Flores",
    "Cabrera", "Campos", "Vega", "Fuentes", "Carrasco", "Díez", "Reyes", "Nieto", "Aguilar", "Pascual", "Santana",
    "Herrero", "Lorenzo", "Montero", "Hidalgo", "Giménez", "Ibáñez", "Ferrer", "Durán", "Santiago", "Benítez",
    "Mora", "Vicente", "Vargas", "Arias", "Carmona", "Crespo", "Román", "Pastor", "Soto", "Sáez", "Velasco",
    "Soler", "Parra", "Esteban", "Bravo", "Gallardo", "Rojas", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Schmidt", "Schneider", "Fischer", "Weber", "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi",
    "Dubois", "Lefèvre", "Moreau", "Laurent", "Okafor", "Mensah", "Nkosi", "Rahman", "Khan", "Patel", "Singh",
    "Nakamura", "Tanaka", "Wang", "Li", "Zhang", "Kowalski", "Nowak", "Johansson", "O'Connor", "Murphy", "Kelly",
    "Byrne", "Walsh", "Ryan", "Ivanov", "Petrov", "Horvat", "Novák", "Svoboda", "Søndergaard", "Gracia", "Garza",
    "Lopes", "Nuñes", "Smyth", "Mueller",
]
GIVEN_HEAD = [
    "María", "José", "Antonio", "Manuel", "Carmen", "Francisco", "Ana", "Juan", "David", "Laura", "Javier",
    "Isabel", "Daniel", "Lucía", "Carlos", "Marta", "Jesús", "Cristina", "Alejandro", "Elena", "Miguel", "Pilar",
    "Rafael", "Sofía", "Pedro", "Paula", "Pablo", "Raquel", "Ángel", "Dolores", "Sergio", "Rosa", "Fernando",
    "Sara", "Jorge", "Mercedes", "Luis", "Andrea", "Alberto", "Julia", "John", "Emma", "Olivia", "Liam", "Noah",
    "Zoë", "Chloé", "François", "Søren", "Björn", "Aoife", "Siobhán", "Łukasz", "Inês", "Mateo", "Valentina",
    "Hugo", "Grace", "Ethan", "Aisha", "Yusuf", "Mei", "Hiroshi", "Priya", "Arjun", "Fatima", "Omar", "Isabella",
    "Lorenzo", "Giulia", "Jakub", "Ewa", "Nils", "Ingrid", "Kwame", "Ama", "Thabo", "Lerato", "Mohammed", "Amara",
    "Hélène", "Jürgen", "Mariana", "Mario", "Josefa", "Joseph", "Anna",
]
_ONSETS = [
    "b", "c", "d", "f", "g", "gu", "l", "ll", "m", "n", "ñ", "p", "qu", "r", "s", "t", "v", "z", "ch", "br", "tr",
    "cr", "gr", "pl", "fr", "bl",
]
_VOWELS = [
    "a", "e", "i", "o", "u", "a", "e", "o", "á", "é", "í", "ó", "ú", "ü",
]
_CODAS = ["", "", "", "n", "r", "s", "l", "z"]
_ENDINGS = ["ez", "es", "as", "ano", "ero", "ino", "ado", "illo", "eda", "ales", "ski", "son", "ova", "elli",
            "ard", "ek", "ić", "aga", "arro", "ón"]


def _tail(count: int, rng: random.Random, taken: set[str]) -> list[str]:
    """`count` distinct made-up names (2-3 syllables and an ending, accents now and then)."""
    names: list[str] = []
    while len(names) < count:
        word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                       for _ in range(rng.choice((1, 2, 2, 3)))) + rng.choice(_ENDINGS)
        word = word[0].upper() + word[1:]
        if word not in taken:
            taken.add(word)
            names.append(word)
    return names


class NameDistribution:
    """Names drawn with a Zipf-like frequency: P(rank r) ~ 1 / (r + offset), the head of real names
    first, then a generated long tail. With ~1 tail name per 20 patients, the commonest surname
    word is on ~1.3 % of patients, the 10th on ~0.8 %; 30 % of people carry two surnames and 12 % a
    compound given name, as in Spain."""

    def __init__(self, head: list[str], tail: int, offset: float, rng: random.Random) -> None:
        self.names = head + _tail(tail, rng, set(head))
        self.cumulative = list(itertools.accumulate(1 / (r + offset) for r in range(1, len(self.names) + 1)))

    def draw(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.names, cum_weights=self.cumulative, k=k)


def _people(count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(given name, family name) of `count` people."""
    family = NameDistribution(FAMILY_HEAD, max(2_000, count // 20), 12, rng)
    given = NameDistribution(GIVEN_HEAD, max(1_000, count // 100), 5, rng)
    first, second, first_given, second_given = (family.draw(rng, count), family.draw(rng, count),
                                                given.draw(rng, count), given.draw(rng, count))
    people = []
    for i in range(count):
        roll = rng.random()
        surname = f"{first[i]} {second[i]}" if roll < 0.3 else first[i]
        name = f"{first_given[i]} {second_given[i]}" if roll > 0.88 else first_given[i]
        people.append((name, surname))
    return people


def _typo(word: str, rng: random.Random) -> str:
    """One slip of the keyboard inside the word: a letter replaced, doubled or two swapped."""
    if len(word) < 4:
        return word + word[-1]
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + rng.choice("aeiourstnlz") + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i] + word[i:]
    return word[:i - 1] + word[i] + word[i - 1] + word[i + 1:]


QUERY_KINDS = ("full name", "common surname", "surname", "prefixes", "short prefix", "typo", "surname typo")


def _queries(people: list[tuple[str, str]], count: int, rng: random.Random) -> list[tuple[str, str]]:
    """`count` (kind, q) as a receptionist types them, about people drawn as they come (common names
    more often)."""
    out = []
    for i in range(count):
        given, family = people[rng.randrange(len(people))]
        first_given, surname = given.split()[0], family.split()[0]
        kind = QUERY_KINDS[i % len(QUERY_KINDS)]
        q = {
            "full name": f"{given} {family}",
            "common surname": rng.choice(FAMILY_HEAD[:10]),
            "surname": names.fold(family),
            "prefixes": f"{first_given[:rng.choice((3, 4))]} {surname[:rng.choice((3, 4, 5))]}",
            "short prefix": surname[:3],
            "typo": f"{first_given} {_typo(names.fold(surname), rng)}",
            "surname typo": _typo(names.fold(rng.choice(FAMILY_HEAD[:20])), rng),
        }[kind]
        out.append((kind, q))
    return out


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


def _load(url: str, org_id: uuid.UUID, people: list[tuple[str, str]], rng: random.Random) -> None:
    """COPY the patients with phones (all) and emails (half) into a fresh organisation."""
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO organisations (id, name, slug, timezone, is_active) VALUES (%s, %s, %s, 'UTC', true)",
            (org_id, "Benchmark Clinic", f"bench-{org_id.hex[:8]}"),
        )
        start = time.perf_counter()
        ids = [uuid.uuid4() for _ in people]
        with conn.cursor() as cur:
            with cur.copy(
                "COPY patients (id, org_id, given_name, family_name, birth_date, gender, "
                "preferred_language, tags, status, is_provisional, primary_phone, primary_email) "
                "FROM STDIN"
            ) as copy:
                for i, (pid, (given, family)) in enumerate(zip(ids, people, strict=True)):
                    born = date(1930, 1, 1) + timedelta(days=rng.randrange(0, 94 * 365))
                    email = f"p{i}@example.org" if i % 2 == 0 else None
                    copy.write_row((pid, org_id, given, family, born, rng.choice(["male", "female"]), "en", [],
                                    "active", False, _phone(i), email))
            with cur.copy("COPY patient_phones (id, org_id, patient_id, number, kind, is_primary) FROM STDIN") as copy:
                for i, pid in enumerate(ids):
                    copy.write_row((uuid.uuid4(), org_id, pid, _phone(i), "mobile", True))
            with cur.copy("COPY patient_emails (id, org_id, patient_id, email, kind, is_primary) FROM STDIN") as copy:
                for i, pid in enumerate(ids):
                    if i % 2 == 0:
                        copy.write_row((uuid.uuid4(), org_id, pid, f"p{i}@example.org", "personal", True))
        conn.commit()
        conn.autocommit = True
        for table in ("patients", "patient_phones", "patient_emails", "patient_name_words", "patient_name_terms"):
            conn.execute(f"VACUUM ANALYZE {table}")  # the name words and terms were filled by the trigger
        print(f"loaded {len(people):,} patients (COPY + VACUUM ANALYZE) in {time.perf_counter() - start:.1f} s")
        common = conn.execute(
            "SELECT word, count(*) FROM patient_name_words WHERE org_id = %s GROUP BY word ORDER BY 2 DESC LIMIT 5",
            (org_id,)).fetchall()
        terms = conn.execute("SELECT count(*) FROM patient_name_terms WHERE org_id = %s", (org_id,)).fetchone()
        print(f"{terms[0] if terms else 0:,} distinct name words; commonest: "
              + ", ".join(f"{w} {n / len(people):.1%}" for w, n in common))


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


# The naive search: every word a substring of the name, found by reading the organisation's patients.
SEQ_SCAN_ILIKE = (
    "SELECT id, count(*) OVER () FROM patients WHERE org_id = %s AND deleted_at IS NULL AND status <> 'merged' "
    "AND search_name ILIKE ALL(%s) ORDER BY family_name, given_name, id LIMIT 20"
)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


async def _name_search_rounds(url: str, db: Database, who: Principal, queries: list[tuple[str, str]],
                              rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Each round runs every query three ways, one after the other:
    * `service.search` as `GET /patients?q=` calls it, the whole call (the dictionary words, the
      ranking, 20 patients loaded with their contacts through the ORM, the audit row), with its
      Python CPU time and its statements (round trips);
    * the ranking statement alone (`search.name_ranking`: ids of the page + total) on a plain
      connection;
    * the naive search on another plain connection with index scans off: every word a substring
      (`ILIKE`) of the name, page + total, a sequential scan of the organisation's patients.
    The two plain-connection figures are like for like (one statement, same client)."""
    page = PageParams(limit=20, offset=0)
    plain = await psycopg.AsyncConnection.connect(url, autocommit=True)
    naive = await psycopg.AsyncConnection.connect(url, autocommit=True)
    for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
        await naive.execute(f"SET {setting} = off")
    figures: dict[str, list[tuple[float, float]]] = {"service": [], "ranking": [], "ilike": [], "cpu": [],
                                                     "statements": []}
    statements = [0]

    @event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _count(*_: Any) -> None:
        statements[0] += 1

    by_kind: dict[str, list[float]] = {kind: [] for kind in QUERY_KINDS}
    dialect = db.engine.dialect
    async with db.sessionmaker() as session:
        for _, q in queries[:5]:  # warm up
            await service.search(session, who, service.Filters(q=q), page)
        for _ in range(rounds):
            samples: dict[str, list[float]] = {name: [] for name in figures}
            for n, (kind, q) in enumerate(queries):
                statements[0] = 0
                cpu, start = time.process_time(), time.perf_counter()
                await service.search(session, who, service.Filters(q=q), page)
                samples["service"].append((time.perf_counter() - start) * 1000)
                samples["cpu"].append((time.process_time() - cpu) * 1000)
                samples["statements"].append(statements[0])
                by_kind[kind].append(samples["service"][-1])
                if n % 20 == 19:
                    await session.rollback()  # drop the audit rows
                words = search._query_words(names.fold(q))
                start = time.perf_counter()
                terms = await _plain_terms(plain, who.org_id, words, dialect)
                if {i for i, _, _ in terms.rows} >= set(range(len(words))):  # else nothing can match
                    sql, params = _plain_sql(*search.name_ranking(who.org_id, terms, page), dialect)
                    await (await plain.execute(sql, params)).fetchall()
                samples["ranking"].append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                await (await naive.execute(SEQ_SCAN_ILIKE, (who.org_id, [f"%{w}%" for w in words]))).fetchall()
                samples["ilike"].append((time.perf_counter() - start) * 1000)
            await session.rollback()
            for name, values in samples.items():
                figures[name].append(_percentiles(values))
    await plain.close()
    await naive.close()
    event.remove(db.engine.sync_engine, "before_cursor_execute", _count)

    def line(label: str, name: str, unit: str = "ms") -> str:
        return (f"  {label:<46} p50 {_spread([f[0] for f in figures[name]])}   "
                f"p95 {_spread([f[1] for f in figures[name]])} {unit}")

    def ratio(label: str, slow: str, fast: str) -> str:
        pairs = list(zip(figures[slow], figures[fast], strict=True))
        return (f"  {label:<46} p50 {_spread([a[0] / b[0] for a, b in pairs])}x  "
                f"p95 {_spread([a[1] / b[1] for a, b in pairs])}x")

    print(f"fuzzy name search, {rounds} rounds of {len(queries)} queries (median (min-max) over rounds):")
    print(line("service.search (page of 20 + total, loaded)", "service"))
    print(line("  of which Python CPU", "cpu"))
    print(line("  statements (round trips) per call", "statements", ""))
    print(line("ranking statement alone (ids + total)", "ranking"))
    print(line("seq-scan ILIKE (ids + total)", "ilike"))
    print(ratio("seq-scan ILIKE / ranking statement", "ilike", "ranking"))
    print(ratio("seq-scan ILIKE / service.search", "ilike", "service"))
    print("  service.search p95 by kind of query (ms, all rounds): "
          + ", ".join(f"{kind} {_percentiles(samples)[1]:.1f}" for kind, samples in by_kind.items()))
    return figures


_COMPILED: dict[int, Any] = {}
THRESHOLD: float = Settings.model_fields["patient_search_similarity"].default  # the service's default


def _plain_sql(stmt: Any, params: dict[str, Any], dialect: Any) -> tuple[str, dict[str, Any]]:
    """A search statement (built once per shape, see patients.search) as SQL for a plain connection;
    compiled once, like SQLAlchemy's own cache does for the service."""
    compiled = _COMPILED.get(id(stmt)) or _COMPILED.setdefault(id(stmt), stmt.compile(dialect=dialect))
    return str(compiled), compiled.construct_params(params)


async def _plain_terms(conn: psycopg.AsyncConnection[Any], org_id: uuid.UUID, words: list[str], dialect: Any
                       ) -> search.NameTerms:
    """`search.name_terms` on a plain connection."""
    rows = await (await conn.execute(*_plain_sql(*search._name_terms_query(org_id, words, THRESHOLD), dialect))
                  ).fetchall()
    return search.NameTerms(words, [(int(i), str(word), float(score)) for i, word, score in rows])


async def _explain(url: str, db: Database, org_id: uuid.UUID, qs: list[str]) -> None:
    """The plans of the ranking statement (EXPLAIN ANALYZE), to read which indexes it uses."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("SELECT set_config('pg_trgm.similarity_threshold', '0.35', false)")
        for q in qs:
            terms = await _plain_terms(conn, org_id, search._query_words(names.fold(q)), db.engine.dialect)
            sql, params = _plain_sql(*search.name_ranking(org_id, terms, PageParams(limit=20, offset=0)),
                                     db.engine.dialect)
            result = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {sql}", params)
            print(f"--- EXPLAIN ANALYZE of the ranking statement, q={q!r} ({len(terms.rows)} dictionary words)")
            print("\n".join(row[0] for row in await result.fetchall()))


async def _run(url: str, count: int, queries: int, rounds: int, explain: bool) -> str:
    """Everything at one size; returns the whole-call line of the summary."""
    rng = random.Random(42)
    org_id = uuid.uuid4()
    people = _people(count, rng)
    _load(url, org_id, people, rng)
    db = Database.connect(url, pool_size=2, max_overflow=0)
    context.bind(db.sessionmaker, context.Context.build(Settings(database_url=url)))
    who = Principal.system(org_id)
    page = PageParams(limit=20, offset=0)

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
        given, family = people[r.randrange(count)]
        return PatientCreate(
            given_name=given,
            family_name=family,
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
    figures = await _name_search_rounds(url, db, who, _queries(people, queries, random.Random(7)), rounds)
    load_during = os.getloadavg()[0]
    await _time("phone search (any format)", db, queries, phone_search)
    await _time("duplicate detection for a new patient", db, queries, detect)
    await _time("create incl. duplicate detection", db, queries, create)
    if explain:
        await _explain(url, db, org_id, [FAMILY_HEAD[0], FAMILY_HEAD[0][:3], f"{GIVEN_HEAD[0]} {FAMILY_HEAD[0]}",
                                         f"{GIVEN_HEAD[1][:3]} {FAMILY_HEAD[0][:3]}"])
    await db.dispose()
    load1, load5, _ = os.getloadavg()
    print(f"load average while it ran: {load1:.2f} (1 min), {load5:.2f} (5 min) on {os.cpu_count()} cores")
    p50s, p95s = [f[0] for f in figures["service"]], [f[1] for f in figures["service"]]
    ratio = [a[1] / b[1] for a, b in zip(figures["ilike"], figures["service"], strict=True)]
    return (f"  {count:>11,}  p50 {_spread(p50s)}  p95 {_spread(p95s)} ms  ILIKE/service p95 {_spread(ratio)}x"
            f"  statements {statistics.median(f[0] for f in figures['statements']):.0f}  load {load_during:.2f}")


def _database_for(url: str, count: int, embedded_server: bool) -> str:
    """A fresh database per size on the throwaway embedded server (so one size's rows and statistics
    do not bear on the other's); the given DATABASE_URL as it is otherwise (one organisation each)."""
    if not embedded_server:
        return url
    name = f"bench_{count}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def main() -> None:
    prm_logging.configure("WARNING", json=False)
    modules.load()  # every domain's tables, so the ORM knows them all
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, nargs="+", default=[100_000],
                        help="one size or several, each in a database of its own (e.g. 100000 1000000)")
    parser.add_argument("--queries", type=int, default=140, help="queries per round (and runs of the others)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--explain", action="store_true", help="print the plans of three name searches")
    args = parser.parse_args()
    given = os.environ.get("DATABASE_URL")
    server = given or embedded.start(Path(tempfile.mkdtemp(prefix="prm-bench-")) / "pg", throwaway=True)
    summary = []
    for count in args.patients:
        url = _database_for(server, count, embedded_server=not given)
        _migrate(url)
        summary.append(asyncio.run(_run(url, count, args.queries, args.rounds, args.explain)))
    print("fuzzy name search, the whole service.search call, median (min-max) over rounds:")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
