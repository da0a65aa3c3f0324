"""The migrations build exactly what the models describe, and every one of them is reversible."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from prm.app import migrations_dir
from prm.core import embedded
from prm.core.db import sqlalchemy_url
from prm.core.models import Base

pytestmark = pytest.mark.slow


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = url
    return config


def _skip_procrastinate(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    table = obj.table.name if type_ in {"index", "column", "unique_constraint", "foreign_key_constraint"} else name
    return not str(table).startswith("procrastinate_")


def test_history_is_linear() -> None:
    script = ScriptDirectory.from_config(_config("postgresql://unused"))
    assert len(script.get_heads()) == 1
    for revision in script.walk_revisions():
        assert not isinstance(revision.down_revision, tuple | list), revision.revision


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                         "include_object": _skip_procrastinate})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_every_migration_downgrades_and_upgrades_again() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="prm-migrations-")) / "pg"
    url = embedded.start(data_dir, throwaway=True)
    try:
        config = _config(url)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        engine = create_engine(sqlalchemy_url(url))
        with engine.connect() as conn:
            left = conn.execute(text(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name <> 'alembic_version'")).scalar_one()
        engine.dispose()
        assert left == 0
        command.upgrade(config, "head")
    finally:
        embedded.stop(data_dir)
