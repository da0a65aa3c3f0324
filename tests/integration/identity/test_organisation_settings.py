"""An organisation's own settings (phone region, reminder offsets) over the process defaults."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from prm.appointments import service as appointments
from prm.identity import service as identity
from prm.identity.models import Organisation
from tests.fixtures.settings_switch import current


async def test_defaults_come_from_the_process_settings(session: AsyncSession, org: Organisation) -> None:
    effective = await identity.organisation_settings(session, org.id)
    assert effective.phone_region == current().default_phone_region
    assert list(effective.reminder_offsets_minutes) == await appointments.reminder_offsets(session, org.id)


async def test_stored_settings_override_the_defaults_for_that_organisation_only(
    session: AsyncSession, org: Organisation, other_org: Organisation, client: httpx.AsyncClient
) -> None:
    r = await client.patch(
        "/admin/organisation/settings", json={"default_phone_region": "ES", "reminder_offsets_minutes": "60,2880"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["effective_phone_region"] == "ES"
    assert body["effective_reminder_offsets_minutes"] == [2880, 60]
    assert await appointments.reminder_offsets(session, org.id) == [2880, 60]

    # a national Spanish number is read in the organisation's region
    r = await client.post(
        "/patients", json={"given_name": "Ana", "family_name": "Ruiz", "phones": [{"number": "612 345 678"}]}
    )
    assert r.status_code == 201, r.text
    assert r.json()["phones"][0]["number"] == "+34612345678"
    # the other organisation keeps the process defaults
    other = await identity.organisation_settings(session, other_org.id)
    assert other.phone_region == current().default_phone_region
    assert list(other.reminder_offsets_minutes) != [2880, 60]

    r = await client.patch("/admin/organisation/settings", json={"default_phone_region": None})
    assert r.json()["effective_phone_region"] == current().default_phone_region


async def test_bad_settings_are_422_naming_the_field(client: httpx.AsyncClient, make_client) -> None:
    r = await client.patch("/admin/organisation/settings", json={"default_phone_region": "XX"})
    assert r.status_code == 422 and "default_phone_region" in r.text
    r = await client.patch("/admin/organisation/settings", json={"reminder_offsets_minutes": "0,-5"})
    assert r.status_code == 422 and "reminder_offsets_minutes" in r.text
    coordinator = await make_client("coordinator")
    assert (await coordinator.patch("/admin/organisation/settings", json={})).status_code == 403
