"""A small clinic for the FHIR tests: the scheduling clinic of the appointments tests, a patient
with contacts and an identifier, and one booked appointment."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.core import clock
from prm.identity.models import Organisation
from tests.fixtures.factories import make_patient, principal
from tests.fixtures.fhir_peer import fhir_peer  # noqa: F401  (fixture)
from tests.integration.appointments.conftest import Clinic, build_clinic

# Monday 2026-03-23, 08:00 UTC (09:00 in Madrid)
NOW = datetime(2026, 3, 23, 8, 0, tzinfo=UTC)


@dataclass
class FhirWorld:
    clinic: Clinic
    patient: Any
    appointment: Any


async def build_world(session: AsyncSession, org: Organisation) -> FhirWorld:
    clinic = await build_clinic(session, org.id)
    patient = await make_patient(session, org, given_name="Lucía", family_name="Fernández", phone="+34600111222",
                                 email="lucia@example.org", birth_date=date(1985, 4, 12), gender="female",
                                 identifiers=[{"system": "mrn", "value": "MRN-0042", "label": "Hospital MRN"}],
                                 address={"line": ["Calle Mayor 1"], "city": "Madrid", "postal_code": "28013",
                                          "country": "ES"})
    appointment = await appointments.book(session, principal(org), {
        "patient_id": patient.id, "service_id": clinic.cleaning.id, "practitioner_id": clinic.vega.id,
        "start_at": datetime(2026, 3, 24, 9, 0, tzinfo=UTC)})
    return FhirWorld(clinic, patient, appointment)


@pytest.fixture
async def world(session: AsyncSession, org: Organisation) -> Any:
    with clock.frozen(NOW):
        yield await build_world(session, org)


def new_id() -> str:
    return str(uuid.uuid4())
