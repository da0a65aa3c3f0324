"""Alembic environment: async engine, psycopg 3, the URL from settings (or the caller)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from prm import modules
from prm.core.db import resolve_database_url, sqlalchemy_url
from prm.core.models import Base
from prm.settings import get_settings

modules.load()
target_metadata = Base.metadata
config = context.config


def _url() -> str:
    url = config.attributes.get("database_url") or resolve_database_url(get_settings())
    return sqlalchemy_url(url)


def include_object(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    """procrastinate's tables are created from its own schema, not from our models."""
    table = obj.table.name if type_ in {"index", "column", "unique_constraint", "foreign_key_constraint"} else name
    return not str(table).startswith("procrastinate_")


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True,
                      transaction_per_migration=True, include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
