"""Templates: rendering, updates and field limits."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from prm.identity.models import Organisation
from prm.settings import Settings

from .support import APPT


async def test_notification_templating(
    session: AsyncSession, client: httpx.AsyncClient, org: Organisation, messaging_settings: Settings
) -> None:
    draft = {
        "key": "lab_results",
        "channel": "email",
        "locale": "en",
        "subject": "Results for {{ patient_name }}",
        "body": "Your {{ test }} results are in.",
        "html_body": "<p>{{ test }}</p>",
        "variables": ["patient_name", "test"],
    }
    preview = await client.post(
        "/notifications/templates/preview",
        json={"draft": draft, "variables": {"patient_name": "Ana", "test": "<blood>"}},
    )
    assert preview.status_code == 200
    assert preview.json() | {"variables_used": None} == {
        "subject": "Results for Ana",
        "body": "Your <blood> results are in.",
        "html_body": "<p>&lt;blood&gt;</p>",
        "variables_used": None,
        "source": "draft",
    }
    missing = await client.post(
        "/notifications/templates/preview", json={"draft": draft, "variables": {"test": "x"}}
    )
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "variables.patient_name"
    undeclared = await client.post("/notifications/templates", json={**draft, "variables": ["test"]})
    assert undeclared.status_code == 422 and "patient_name" in undeclared.json()["detail"]
    created = await client.post("/notifications/templates", json=draft)
    assert created.status_code == 201
    dup = await client.post("/notifications/templates", json=draft)
    assert dup.status_code == 409
    stored = await client.post(
        "/notifications/templates/preview",
        json={"key": "lab_results", "channel": "email", "variables": {"patient_name": "B", "test": "x"}},
    )
    assert stored.json()["source"] == "organisation" and stored.json()["subject"] == "Results for B"
    builtin = await client.post(
        "/notifications/templates/preview",
        json={
            "key": "appointment_cancelled",
            "channel": "sms",
            "locale": "es-MX",
            "variables": {**APPT, "patient_name": "Ana"},
        },
    )
    assert builtin.json()["source"] == "builtin" and builtin.json()["body"].startswith("Hola Ana")
    tid = created.json()["id"]
    patched = await client.patch(f"/notifications/templates/{tid}", json={"body": "{{ nope }}"})
    assert patched.status_code == 422
    ok = await client.patch(f"/notifications/templates/{tid}", json={"body": "Results: {{ test }}"})
    assert ok.status_code == 200 and ok.json()["body"] == "Results: {{ test }}"
    listed = await client.get("/notifications/templates", params={"key": "lab_results"})
    assert listed.json()["total"] == 1
    assert len((await client.get("/notifications/templates/builtin")).json()) >= 24
    assert (await client.delete(f"/notifications/templates/{tid}")).status_code == 204
    assert (await client.get(f"/notifications/templates/{tid}")).status_code == 404
    sandboxed = await client.post(
        "/notifications/templates/preview",
        json={
            "draft": {**draft, "body": "{{ test.__class__.__mro__ }}"},
            "variables": {"patient_name": "a", "test": "x"},
        },
    )
    assert sandboxed.status_code == 422


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"body": None}, "body"),
        ({"variables": None}, "variables"),
        ({"subject": "s" * 501}, "subject"),
        ({"description": "d" * 501}, "description"),
    ],
)
async def test_template_update_with_null_or_oversized_field_is_422_and_changes_nothing(
    client: httpx.AsyncClient, change: dict, field: str
) -> None:
    created = await client.post(
        "/notifications/templates",
        json={"key": "fuzz_found", "channel": "email", "subject": "Hi", "body": "Hello {{ name }}",
              "variables": ["name"]},
    )
    assert created.status_code == 201, created.text
    url = f"/notifications/templates/{created.json()['id']}"
    r = await client.patch(url, json=change)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get(url)).json() == created.json()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"locale": "pdm-" + "-".join(["abcdefgh"] * 5)}, "locale"),  # matches the pattern, longer than 35
        ({"channel": "whatsapp", "content_sid": "HX" + "a" * 64}, "content_sid"),  # 66 > the column's 64
    ],
)
async def test_template_fields_longer_than_their_columns_are_422(
    client: httpx.AsyncClient, change: dict, field: str
) -> None:
    """Found by fuzzing: values allowed by the pattern but longer than the column were a 500."""
    r = await client.post("/notifications/templates",
                          json={"key": "fuzz_long", "channel": "sms", "body": "Hello", **change})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]
    assert (await client.get("/notifications/templates", params={"key": "fuzz_long"})).json()["total"] == 0
