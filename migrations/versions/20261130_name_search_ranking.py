"""name search ranking (issue #19): two indexes, so a fuzzy name search ranks only its top
candidates instead of every match:
* `ix_patient_name_words_ranked`: each name word's patients in ranking order (name length, name,
  id); a one-word search reads a page's worth of patients per matching word;
* `ix_patients_name_words`: GIN over the words of each patient's folded name, each prefixed by the
  organisation (`prm_name_keys`), so a search of several words intersects its own organisation's
  patients in the index, however big the others are.

Both are built with CREATE INDEX CONCURRENTLY outside the migration's transaction, so writes to
`patients` and `patient_name_words` (every insert and rename) go on while they build (here, 1M
patients: ~5 s for the GIN index, ~20 s for the other, with the machine loaded). A failed concurrent build
leaves an INVALID index behind: the upgrade drops it first and builds again when run anew.

Revision ID: 20261130_name_search_ranking
Revises: 20261130_reference_versions
Create Date: 2026-11-30 11:30:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_name_search_ranking"
down_revision = "20261130_reference_versions"
branch_labels = None
depends_on = None

# The words of a folded name (split as the name-word trigger splits them) as "<org id>:<word>".
NAME_KEYS_FN = """
CREATE OR REPLACE FUNCTION prm_name_keys(org uuid, name text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT array_agg(org::text || ':' || w) FROM regexp_split_to_table(name, '[^[:alnum:]]+') AS w WHERE w <> '' $$
"""
INDEXES = {
    "ix_patient_name_words_ranked": "patient_name_words (org_id, word, length(sort_key), sort_key, patient_id)",
    "ix_patients_name_words": "patients USING gin (prm_name_keys(org_id, search_name))",
}


def upgrade() -> None:
    op.execute(NAME_KEYS_FN)
    with op.get_context().autocommit_block():
        for name, definition in INDEXES.items():
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # a leftover of an interrupted build
            op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {definition}")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in INDEXES:
            op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    op.execute("DROP FUNCTION IF EXISTS prm_name_keys(uuid, text)")
