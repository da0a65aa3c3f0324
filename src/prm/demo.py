"""The demo clinic `make run` seeds on first start, growing as domains add their `demo.py`."""

from __future__ import annotations

import importlib
import importlib.util
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from prm import context as process_context
from prm.identity import service as identity
from prm.identity.models import Organisation
from prm.identity.schemas import ApiKeyCreate, OrganisationCreate, UserCreate
from prm.modules import DOMAINS

DEMO_SLUG = "demo"
DEMO_EMAIL = "admin@demo-clinic.example"
DEMO_PASSWORD = "demo-password-123"  # development only; production gets a random one


async def seed_if_empty(session: AsyncSession) -> dict[str, Any] | None:
    """Create the demo clinic unless it exists; returns its credentials (shown once) or None."""
    if await session.scalar(select(Organisation.id).where(Organisation.slug == DEMO_SLUG)):
        return None
    production = process_context.of(session).settings.environment == "production"
    password = secrets.token_urlsafe(12) if production else DEMO_PASSWORD
    org = await identity.create_organisation(
        session, OrganisationCreate(name="Demo Clinic", slug=DEMO_SLUG, timezone="Europe/London")
    )
    admin = await identity.create_user(
        session, org.id, UserCreate(email=DEMO_EMAIL, password=password, role="admin", full_name="Demo Admin")
    )
    await identity.create_user(
        session, org.id,
        UserCreate(email="coordinator@demo-clinic.example", password=password, role="coordinator",
                   full_name="Casey Coordinator"),
    )
    _, key = await identity.create_api_key(session, org.id, ApiKeyCreate(name="demo integration", role="integration"))
    context: dict[str, Any] = {"admin": admin}
    # the care journeys go live before the patients are created, so that the patients' own events
    # enrol them (a journey reacts only to what happens while it is live)
    for domain in sorted(DOMAINS, key=lambda d: d != "journeys"):
        name = f"prm.{domain}.demo"
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            await importlib.import_module(name).seed(session, org, context)
    return {"org_id": str(org.id), "org_slug": org.slug, "email": DEMO_EMAIL, "password": password, "api_key": key}
