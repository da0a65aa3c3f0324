"""Patient data stays out of the logs, the database server's own included (issue 9): constraint
violations carrying marker values (a duplicate MRN, a foreign key, a check) leave the markers in
neither the application's log nor the embedded PostgreSQL's log."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import embedded
from tests.fixtures.factories import make_patient


def _server_logs() -> list[Path]:
    """The log files of the embedded server(s) this test process started (the test database's)."""
    return [f for data_dir in embedded.data_dirs() for f in embedded.log_files(data_dir)]


async def _violate(session: AsyncSession, statement: str, **params: object) -> str:
    """Run `statement` in a savepoint; it must fail with a constraint violation. Returns its SQLSTATE."""
    with pytest.raises(DBAPIError) as info:
        async with session.begin_nested():
            await session.execute(text(statement), params)
    return str(getattr(info.value.orig, "sqlstate", ""))


async def test_constraint_violations_leave_no_values_in_any_log(
    session: AsyncSession, org, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the server log of an external test database is not ours to read")
    mrn = f"MRNMARK{uuid.uuid4().hex[:12]}"
    gender = f"GX{uuid.uuid4().hex[:10]}"
    missing_patient = uuid.uuid4()
    patient = await make_patient(session, org, given_name=f"NAMEMARK{uuid.uuid4().hex[:8]}")
    markers = [mrn, gender, str(missing_patient), patient.given_name]  # type: ignore[attr-defined]

    # Through the API: the same MRN twice (the service answers 409 or the constraint does, never 500).
    body = {"given_name": "Ana", "family_name": "Marker", "identifiers": [{"system": "mrn", "value": mrn}]}
    assert (await client.post("/patients", json=body)).status_code == 201
    assert (await client.post("/patients", json={**body, "given_name": "Bea"})).status_code in (409, 422)

    # In SQL, so the server itself reports each kind of violation.
    insert = ("INSERT INTO patient_identifiers (id, org_id, patient_id, system, value, created_at, updated_at) "
              "VALUES (:id, :org, :patient, 'mrn', :value, now(), now())")
    states = [
        await _violate(session, insert, id=uuid.uuid4(), org=org.id, patient=patient.id, value=mrn),  # type: ignore[attr-defined]
        await _violate(session, insert, id=uuid.uuid4(), org=org.id, patient=missing_patient, value="other"),
        await _violate(session, "UPDATE patients SET gender = :g WHERE id = :id", g=gender,
                       id=patient.id),  # type: ignore[attr-defined]
    ]
    assert states == ["23505", "23503", "23514"]  # unique, foreign key, check

    app_log = capsys.readouterr()
    for marker in markers:
        assert marker not in app_log.out and marker not in app_log.err

    files = _server_logs()
    assert files, "the embedded server's log was not found"
    expected = ("uq_patient_identifiers_org_system_value", "fk_patient_identifiers_patient_id_patients",
                "ck_patients_gender")
    deadline = time.monotonic() + 15  # the server writes its log asynchronously
    while True:
        server_log = "".join(f.read_text(errors="replace") for f in files)
        if all(name in server_log for name in expected) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    # The violations were logged (so this scan can see what the server writes) ...
    assert "uq_patient_identifiers_org_system_value" in server_log
    # ... without the values that caused them, the rows they were in, or the statements.
    for marker in markers:
        assert marker not in server_log, f"{marker} is in the PostgreSQL log"
    assert "INSERT INTO patient_identifiers" not in server_log


@pytest.mark.slow
def test_log_settings_are_applied_again_on_an_existing_data_directory() -> None:
    """A data directory whose settings were changed (an old cluster, an operator) is put right on start."""
    import shutil
    import tempfile

    import psycopg

    root = Path(tempfile.mkdtemp(prefix="prm-pglog-"))  # outside pytest's 0700 temp root (initdb user)
    data = root / "pgdata"
    try:
        uri = embedded.start(data)
        with psycopg.connect(uri, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET log_error_verbosity = 'verbose'")
            conn.execute("ALTER SYSTEM SET log_min_error_statement = 'error'")
            conn.execute("ALTER SYSTEM SET log_parameter_max_length_on_error = -1")
        embedded.stop(data)
        uri = embedded.start(data)
        with psycopg.connect(uri, autocommit=True) as conn:
            rows = conn.execute("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)",
                                [list(embedded.LOG_SETTINGS)]).fetchall()
        assert {name: str(value).lower() for name, value in rows} == embedded.LOG_SETTINGS
    finally:
        embedded.stop(data)
        shutil.rmtree(root, ignore_errors=True)
