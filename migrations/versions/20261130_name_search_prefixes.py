"""name search prefixes (issue #19): the GIN index of each patient's name words also holds the first
one, two and three letters of every word, so a search of several short prefixes as typed so far
("ma ga", "fra tru", "o c") finds the patients having them all by intersecting a few posting lists in
the index, instead of reading the postings of the thousands of dictionary words they start.

`prm_name_search_keys(org, name)` gives "<org id>:<word>" for every word of the folded name (as
`prm_name_keys` did) and "<org id>:^<prefix>" for its prefixes of up to three letters (a word is
letters and digits only, so "^" marks a prefix unambiguously). `ix_patients_name_search_keys`
replaces `ix_patients_name_words` (a superset of its keys); both are built and dropped with
CONCURRENTLY outside the migration's transaction, like the index they replace (a failed build leaves
an INVALID index behind: the upgrade drops it first and builds again when run anew).

Revision ID: 20261130_name_search_prefixes
Revises: 20261130_reminder_sweep
Create Date: 2026-11-30 14:00:00
"""

from __future__ import annotations

from alembic import op

revision = "20261130_name_search_prefixes"
down_revision = "20261130_reminder_sweep"
branch_labels = None
depends_on = None

SEARCH_KEYS_FN = """
CREATE OR REPLACE FUNCTION prm_name_search_keys(org uuid, name text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT array_agg(DISTINCT key) FROM regexp_split_to_table(name, '[^[:alnum:]]+') AS w,
      LATERAL (VALUES (org::text || ':' || w), (org::text || ':^' || left(w, 1)), (org::text || ':^' || left(w, 2)),
                      (org::text || ':^' || left(w, 3))) AS keys(key)
      WHERE w <> '' $$
"""
OLD_KEYS_FN = """
CREATE OR REPLACE FUNCTION prm_name_keys(org uuid, name text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT array_agg(org::text || ':' || w) FROM regexp_split_to_table(name, '[^[:alnum:]]+') AS w WHERE w <> '' $$
"""


def upgrade() -> None:
    op.execute(SEARCH_KEYS_FN)
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_patients_name_search_keys")  # an interrupted build
        op.execute("CREATE INDEX CONCURRENTLY ix_patients_name_search_keys ON patients "
                   "USING gin (prm_name_search_keys(org_id, search_name))")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_patients_name_words")
    op.execute("DROP FUNCTION IF EXISTS prm_name_keys(uuid, text)")


def downgrade() -> None:
    op.execute(OLD_KEYS_FN)
    with op.get_context().autocommit_block():
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_patients_name_words")
        op.execute("CREATE INDEX CONCURRENTLY ix_patients_name_words ON patients "
                   "USING gin (prm_name_keys(org_id, search_name))")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_patients_name_search_keys")
    op.execute("DROP FUNCTION IF EXISTS prm_name_search_keys(uuid, text)")
