"""FHIR Bulk export benchmark: patients written as validated NDJSON, against a plain baseline.

    PYTHONPATH=src python benchmarks/fhir_export.py [patients]

Starts a throwaway embedded PostgreSQL (or uses DATABASE_URL), migrates it, creates one organisation
with N patients (default 2000, each with a phone, an email and an MRN), then runs, interleaved, ROUNDS
times each:

* baseline: load the same patients (contacts included) and `json.dumps` a plain dict per row;
* export: the `Patient` part of `$export` (`bulk._resources`): `patients.to_fhir` + our code check +
  the fhir.resources R4B model, per row.

Prints patients per second for both (median, min–max) and the ratio: the price of validating every
resource on the way out. Nothing here asserts a timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from prm import context
from prm.app import migrations_dir
from prm.core import embedded
from prm.core.db import Database
from prm.fhir import bulk
from prm.identity import service as identity
from prm.identity.schemas import OrganisationCreate
from prm.patients.models import Patient, PatientEmail, PatientIdentifier, PatientPhone
from prm.settings import Settings

ROUNDS = 5


async def seed(db: Database, count: int) -> Any:
    async with db.sessionmaker() as session:
        org = await identity.create_organisation(session, OrganisationCreate(name="Bench", slug="bench-fhir",
                                                                             timezone="UTC"))
        for i in range(count):
            patient = Patient(org_id=org.id, given_name=f"Given{i}", family_name=f"Family{i % 97}",
                              gender=("female", "male", "other", "unknown")[i % 4], source="api",
                              primary_phone=f"+3460{i:07d}", primary_email=f"p{i}@example.org")
            session.add(patient)
            await session.flush()
            session.add_all([
                PatientPhone(org_id=org.id, patient_id=patient.id, number=f"+3460{i:07d}", is_primary=True),
                PatientEmail(org_id=org.id, patient_id=patient.id, email=f"p{i}@example.org", is_primary=True),
                PatientIdentifier(org_id=org.id, patient_id=patient.id, system="mrn", value=f"MRN-{i:06d}"),
            ])
        await session.commit()
        return org.id


async def baseline(db: Database, org_id: Any) -> int:
    async with db.sessionmaker() as session:
        rows = await session.scalars(select(Patient).where(Patient.org_id == org_id).options(
            selectinload(Patient.phones), selectinload(Patient.emails), selectinload(Patient.identifiers)))
        lines = [json.dumps({"id": str(p.id), "given": p.given_name, "family": p.family_name, "gender": p.gender,
                             "phones": [x.number for x in p.phones], "emails": [x.email for x in p.emails],
                             "ids": [[x.system, x.value] for x in p.identifiers]}) for p in rows]
        return len(lines)


async def export(db: Database, org_id: Any) -> int:
    async with db.sessionmaker() as session:
        lines = [json.dumps(r, separators=(",", ":"))
                 async for r in bulk._resources(session, org_id, "Patient", None, None)]
        return len(lines)


def migrated_database() -> str:
    url = os.environ.get("DATABASE_URL") or embedded.start(Path(tempfile.mkdtemp(prefix="bench-fhir-")) / "pg",
                                                           throwaway=True)
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "head")  # runs its own event loop: before ours
    return url


async def main(url: str, count: int) -> None:
    db = Database.connect(url)
    context.bind(db.sessionmaker, context.Context.build(Settings(_env_file=None, database_url=url)))  # type: ignore[call-arg]
    org_id = await seed(db, count)
    rates: dict[str, list[float]] = {"baseline": [], "export": []}
    for _ in range(ROUNDS):
        for name, fn in (("baseline", baseline), ("export", export)):
            started = time.perf_counter()
            done = await fn(db, org_id)
            rates[name].append(done / (time.perf_counter() - started))
    for name, values in rates.items():
        print(f"{name:9s} {statistics.median(values):9.0f} patients/s  (min {min(values):.0f}, max {max(values):.0f})")
    ratio = [e / b for e, b in zip(rates["export"], rates["baseline"], strict=True)]
    print(f"export / baseline: median {statistics.median(ratio):.2f} (min {min(ratio):.2f}, max {max(ratio):.2f})"
          f" over {ROUNDS} interleaved rounds of {count} patients")
    await db.dispose()


if __name__ == "__main__":
    asyncio.run(main(migrated_database(), int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
