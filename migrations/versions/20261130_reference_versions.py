"""reference versions: a per-organisation counter the database bumps whenever the scheduling reference
data changes (services and who offers them, practitioners, locations, availability rules and
exceptions, the organisation's own settings), so each API process can cache that data and check it
is current with one integer read inside the booking's first statement.

Row triggers do the bumping, so every writer is covered: the API, the CLI, a migration, hand-written
SQL. The counter row has no foreign key on purpose: an organisation being deleted cascades into its
services etc., whose triggers must not fail on a parent that is already gone (a leftover counter row
is harmless).

Revision ID: 20261130_reference_versions
Revises: 20261130_throughput
Create Date: 2026-11-30 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261130_reference_versions"
down_revision = "20261130_throughput"
branch_labels = None
depends_on = None

# table -> the column holding its organisation (service_practitioners: found through its service)
WATCHED = {
    "services": "org_id",
    "service_practitioners": "service_id",
    "practitioners": "org_id",
    "locations": "org_id",
    "availability_rules": "org_id",
    "availability_exceptions": "org_id",
    "organisations": "id",
}

FUNCTION = """
CREATE FUNCTION prm_reference_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
    org uuid;
BEGIN
    IF TG_OP = 'DELETE' THEN
        changed := to_jsonb(OLD);
    ELSE
        changed := to_jsonb(NEW);
    END IF;
    IF TG_ARGV[0] = 'service_id' THEN
        SELECT s.org_id INTO org FROM services AS s WHERE s.id = (changed ->> 'service_id')::uuid;
    ELSE
        org := (changed ->> TG_ARGV[0])::uuid;
    END IF;
    IF org IS NOT NULL THEN
        INSERT INTO reference_versions AS v (org_id, version) VALUES (org, 1)
        ON CONFLICT (org_id) DO UPDATE SET version = v.version + 1;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "reference_versions",
        sa.Column("org_id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.execute(FUNCTION)
    for table, column in WATCHED.items():
        events = "UPDATE" if table == "organisations" else "INSERT OR UPDATE OR DELETE"
        op.execute(
            f"CREATE TRIGGER reference_changed AFTER {events} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION prm_reference_changed('{column}')"
        )


def downgrade() -> None:
    for table in WATCHED:
        op.execute(f"DROP TRIGGER reference_changed ON {table}")
    op.execute("DROP FUNCTION prm_reference_changed()")
    op.drop_table("reference_versions")
