"""`prm orgs|users|api-keys|jobs` against the test database; a key made with the CLI works on the API."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from typer.testing import CliRunner

from prm.cli import cli
from prm.settings import get_settings


@pytest.fixture
def cli_env(monkeypatch, database_url: str, settings):
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("PRM_DATA_DIR", str(settings.prm_data_dir))
    monkeypatch.setenv("ENVIRONMENT", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def invoke(*args: str, input: str | None = None):
    result = await asyncio.to_thread(CliRunner().invoke, cli, list(args), input=input)
    return result


async def test_cli_creates_org_user_and_key_that_work_on_the_api(cli_env, committed) -> None:
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    r = await invoke("orgs", "create", "CLI Clinic", "--slug", slug, "--timezone", "Europe/Madrid")
    assert r.exit_code == 0, r.output
    r = await invoke("users", "create", "--org", slug, "--email", f"{slug}@example.org", "--role", "coordinator",
                     input="a long enough password\n")
    assert r.exit_code == 0, r.output
    r = await invoke("api-keys", "create", "--org", slug, "--name", "n8n")
    assert r.exit_code == 0, r.output
    key = r.output.split("key: ")[1].strip()
    key_id = r.output.split("id:  ")[1].split()[0]

    c = committed.client(key)
    me = await c.get("/auth/me")
    assert me.status_code == 200 and me.json()["role"] == "integration"
    _other_org, _ = await committed.org()
    assert (await c.get(f"/admin/users/{uuid.uuid4()}")).status_code in (403, 404, 405)

    listed = await invoke("api-keys", "list", "--org", slug)
    assert key_id in listed.output and "active" in listed.output
    assert (await invoke("api-keys", "revoke", key_id)).exit_code == 0
    assert (await c.get("/auth/me")).status_code == 401
    assert "revoked" in (await invoke("api-keys", "list", "--org", slug)).output


async def test_cli_reports_bad_input_clearly(cli_env) -> None:
    r = await invoke("orgs", "create", "X", "--slug", "bad-tz", "--timezone", "Nowhere/City")
    assert r.exit_code == 1 and "time zone" in r.output
    r = await invoke("users", "create", "--org", "no-such-org", "--email", "a@b.example",
                     "--password", "long enough pw")
    assert r.exit_code == 1 and "no-such-org" in r.output
    r = await invoke("users", "create", "--org", "x", "--email", "not-an-email", "--password", "short")
    assert r.exit_code == 1 and "email" in r.output


async def test_cli_jobs_and_demo(cli_env) -> None:
    r = await invoke("jobs", "list")
    assert r.exit_code == 0 and "job(s)" in r.output
    r = await invoke("jobs", "run-due")
    assert r.exit_code == 0 and "succeeded=" in r.output
    first = await invoke("demo")
    second = await invoke("demo")
    assert first.exit_code == 0 and second.exit_code == 0
    assert "already present" in second.output
    assert (await invoke("migrate")).exit_code == 0


async def test_cli_grants_the_platform_role_that_alone_creates_organisations(cli_env, committed) -> None:
    org, admin_key = await committed.org("admin")
    body = {"organisation": {"name": "Via API", "slug": f"via-{uuid.uuid4().hex[:8]}", "timezone": "UTC"},
            "admin": {"email": f"{uuid.uuid4().hex[:8]}@via.example", "password": "long enough pw",
                      "role": "admin"}}
    assert (await committed.client(admin_key).post("/admin/organisations", json=body)).status_code == 403

    r = await invoke("api-keys", "create", "--org", org.slug, "--name", "provisioning", "--platform-admin")
    assert r.exit_code == 0, r.output
    platform_key = r.output.split("key: ")[1].strip()
    assert "platform-admin" in (await invoke("api-keys", "list", "--org", org.slug)).output
    assert (await committed.client(platform_key).post("/admin/organisations", json=body)).status_code == 201

    email = f"op-{uuid.uuid4().hex[:8]}@example.org"
    r = await invoke("users", "create", "--org", org.slug, "--email", email, "--role", "coordinator",
                     "--password", "a long enough password")
    assert r.exit_code == 0 and "platform-admin" not in r.output
    r = await invoke("users", "platform-admin", email)
    assert r.exit_code == 0 and "platform-admin=yes" in r.output, r.output
    r = await invoke("users", "platform-admin", email, "--revoke")
    assert r.exit_code == 0 and "platform-admin=no" in r.output, r.output
    assert (await invoke("users", "platform-admin", "nobody@nowhere.example")).exit_code == 1


async def test_cli_errors_are_one_clear_line_and_a_non_zero_exit(cli_env, monkeypatch) -> None:
    r = await invoke("orgs", "create", "--slug", "Acc-X")
    assert r.exit_code == 1, r.output
    assert r.output.strip().splitlines() == [
        "error: invalid input: slug: String should match pattern '^[a-z0-9][a-z0-9-]*$'"]
    # the name defaults to the slug
    slug = f"cli-{uuid.uuid4().hex[:8]}"
    r = await invoke("orgs", "create", "--slug", slug)
    assert r.exit_code == 0 and slug in r.output
    # an unexpected failure (here: no database) is one line too, never a traceback
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    get_settings.cache_clear()
    r = await invoke("orgs", "list")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("error: database error: connection")


async def test_simulate_reports_an_unreachable_service_in_one_line(cli_env, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    monkeypatch.setenv("PRM_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    r = await invoke("simulate", "whatsapp", "--from", "+34600000000", "hello", "--to", "+15005550006",
                     "--url", "http://127.0.0.1:9", "--timeout", "3")
    assert r.exit_code == 1
    assert r.output.startswith("error: cannot reach the service at http://127.0.0.1:9/webhooks/twilio/messaging")
    assert len(r.output.strip().splitlines()) == 1
    r = await invoke("simulate", "whatsapp", "--from", "banana", "hello")
    assert r.exit_code == 1 and "--from" in r.output
    monkeypatch.setenv("ENVIRONMENT", "test")  # no generated token outside development
    get_settings.cache_clear()
    r = await invoke("simulate", "whatsapp", "--from", "+34600000000", "hello")
    assert r.exit_code == 1 and "TWILIO_AUTH_TOKEN" in r.output
