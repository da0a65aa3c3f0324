"""patients: patient record, phones, emails, identifiers, consent history, fuzzy name search (trigram + name-word index)

Revision ID: 20261125_0002
Revises: 20261125_0001
Create Date: 2026-11-25 14:42:55.301540
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261125_0002'
down_revision = '20261125_0001'
branch_labels = None
depends_on = None

UNACCENT_FN = """
CREATE OR REPLACE FUNCTION prm_unaccent(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$
"""


# The inverted index of name words: rebuilt for a patient whenever its name, status or deletion
# changes; merged and deleted patients have no words. Terms (the per-organisation dictionary) are
# only ever added: a stale term matches no patient.
NAME_WORDS_FN = """
CREATE OR REPLACE FUNCTION patients_index_name_words() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM patient_name_words WHERE patient_id = NEW.id;
    IF NEW.deleted_at IS NULL AND NEW.status <> 'merged' THEN
        INSERT INTO patient_name_words (org_id, word, patient_id, sort_key)
        SELECT DISTINCT NEW.org_id, w, NEW.id, NEW.search_name
        FROM regexp_split_to_table(NEW.search_name, '[^[:alnum:]]+') AS w WHERE w <> '';
        INSERT INTO patient_name_terms (org_id, word)
        SELECT DISTINCT NEW.org_id, w
        FROM regexp_split_to_table(NEW.search_name, '[^[:alnum:]]+') AS w WHERE w <> ''
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END;
$$
"""
NAME_WORDS_TRIGGERS = (
    "CREATE TRIGGER patients_name_words_insert AFTER INSERT ON patients "
    "FOR EACH ROW EXECUTE FUNCTION patients_index_name_words()",
    "CREATE TRIGGER patients_name_words_update AFTER UPDATE OF given_name, family_name, status, deleted_at "
    "ON patients FOR EACH ROW WHEN (OLD.given_name IS DISTINCT FROM NEW.given_name "
    "OR OLD.family_name IS DISTINCT FROM NEW.family_name OR OLD.status IS DISTINCT FROM NEW.status "
    "OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at) EXECUTE FUNCTION patients_index_name_words()",
)


def upgrade() -> None:
    # An IMMUTABLE wrapper of unaccent (which is only STABLE), usable in indexes and generated
    # columns: the dictionary is named explicitly so the result cannot depend on search_path.
    op.execute(UNACCENT_FN)
    op.create_table('patients',
    sa.Column('given_name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('family_name', sa.String(length=200), server_default='', nullable=False),
    sa.Column('birth_date', sa.Date(), nullable=True),
    sa.Column('gender', sa.String(length=16), server_default='unknown', nullable=False),
    sa.Column('preferred_language', sa.String(length=35), server_default='en', nullable=False),
    sa.Column('preferred_channel', sa.String(length=16), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=True),
    sa.Column('address', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('tags', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('merged_into_id', sa.UUID(), nullable=True),
    sa.Column('merged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deceased_date', sa.Date(), nullable=True),
    sa.Column('is_provisional', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=True),
    sa.Column('primary_phone', sa.String(length=20), nullable=True),
    sa.Column('primary_email', sa.String(length=320), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('search_name', sa.Text(), sa.Computed("lower(prm_unaccent(given_name || ' ' || family_name))", persisted=True), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("(status = 'merged') = (merged_into_id IS NOT NULL)", name=op.f('ck_patients_merged_into')),
    sa.CheckConstraint("gender IN ('male', 'female', 'other', 'unknown')", name=op.f('ck_patients_gender')),
    sa.CheckConstraint("preferred_channel IS NULL OR preferred_channel IN ('sms', 'whatsapp', 'email', 'voice')", name=op.f('ck_patients_preferred_channel')),
    sa.CheckConstraint("status IN ('active', 'inactive', 'merged', 'deceased')", name=op.f('ck_patients_status')),
    sa.CheckConstraint('merged_into_id IS NULL OR merged_into_id <> id', name=op.f('ck_patients_not_merged_into_self')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['patients.id'], name=op.f('fk_patients_merged_into_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patients_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patients'))
    )
    op.create_index('ix_patients_merged_into_id', 'patients', ['merged_into_id'], unique=False)
    op.create_index('ix_patients_org_birth_date', 'patients', ['org_id', 'birth_date'], unique=False)
    op.create_index('ix_patients_org_created_at', 'patients', ['org_id', 'created_at'], unique=False)
    op.create_index('ix_patients_org_family_given', 'patients', ['org_id', 'family_name', 'given_name'], unique=False)
    op.create_index(op.f('ix_patients_org_id'), 'patients', ['org_id'], unique=False)
    op.create_index('ix_patients_search_name_trgm', 'patients', ['search_name'], unique=False, postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})
    op.create_index('ix_patients_tags', 'patients', ['tags'], unique=False, postgresql_using='gin')
    op.create_table('consents',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=True),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('recorded_by_kind', sa.String(length=16), nullable=True),
    sa.Column('recorded_by_id', sa.UUID(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("(channel IS NULL AND purpose IN ('ai_processing', 'ehr_export')) OR (channel IS NOT NULL AND purpose IN ('care', 'reminders', 'marketing'))", name=op.f('ck_consents_channel_matches_purpose')),
    sa.CheckConstraint("channel IS NULL OR channel IN ('sms', 'whatsapp', 'email', 'voice')", name=op.f('ck_consents_channel')),
    sa.CheckConstraint("purpose IN ('care', 'reminders', 'marketing', 'ai_processing', 'ehr_export')", name=op.f('ck_consents_purpose')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_consents_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_consents_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consents'))
    )
    op.create_index(op.f('ix_consents_org_id'), 'consents', ['org_id'], unique=False)
    op.create_index('ix_consents_org_recorded_at', 'consents', ['org_id', 'recorded_at'], unique=False)
    op.create_index('ix_consents_patient_key_at', 'consents', ['patient_id', 'channel', 'purpose', 'recorded_at'], unique=False)
    op.create_table('patient_emails',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='personal', nullable=False),
    sa.Column('is_primary', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("kind IN ('personal', 'work', 'other')", name=op.f('ck_patient_emails_kind')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patient_emails_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_emails_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_emails'))
    )
    op.create_index('ix_patient_emails_org_email', 'patient_emails', ['org_id', sa.literal_column('lower(email)')], unique=False)
    op.create_index(op.f('ix_patient_emails_org_id'), 'patient_emails', ['org_id'], unique=False)
    op.create_index(op.f('ix_patient_emails_patient_id'), 'patient_emails', ['patient_id'], unique=False)
    op.create_index('uq_patient_emails_one_primary', 'patient_emails', ['patient_id'], unique=True, postgresql_where=sa.text('is_primary'))
    op.create_index('uq_patient_emails_patient_email', 'patient_emails', ['patient_id', sa.literal_column('lower(email)')], unique=True)
    op.create_table('patient_identifiers',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('system', sa.String(length=255), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patient_identifiers_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_identifiers_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_identifiers')),
    sa.UniqueConstraint('org_id', 'system', 'value', name='uq_patient_identifiers_org_system_value')
    )
    op.create_index(op.f('ix_patient_identifiers_org_id'), 'patient_identifiers', ['org_id'], unique=False)
    op.create_index(op.f('ix_patient_identifiers_patient_id'), 'patient_identifiers', ['patient_id'], unique=False)
    op.create_table('patient_phones',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=16), server_default='mobile', nullable=False),
    sa.Column('is_primary', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("kind IN ('mobile', 'home', 'work', 'other')", name=op.f('ck_patient_phones_kind')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patient_phones_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_phones_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_patient_phones')),
    sa.UniqueConstraint('patient_id', 'number', name='uq_patient_phones_patient_number')
    )
    op.create_index(op.f('ix_patient_phones_org_id'), 'patient_phones', ['org_id'], unique=False)
    op.create_index('ix_patient_phones_org_number', 'patient_phones', ['org_id', 'number'], unique=False)
    op.create_index(op.f('ix_patient_phones_patient_id'), 'patient_phones', ['patient_id'], unique=False)
    op.create_index('uq_patient_phones_one_primary', 'patient_phones', ['patient_id'], unique=True, postgresql_where=sa.text('is_primary'))
    op.create_table('patient_name_terms',
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('word', sa.Text(collation='C'), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patient_name_terms_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('org_id', 'word', name=op.f('pk_patient_name_terms'))
    )
    op.create_index('ix_patient_name_terms_word_trgm', 'patient_name_terms', ['word'], unique=False, postgresql_using='gin', postgresql_ops={'word': 'gin_trgm_ops'})
    op.create_table('patient_name_words',
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('word', sa.Text(collation='C'), nullable=False),
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('sort_key', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_patient_name_words_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_patient_name_words_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('org_id', 'word', 'patient_id', name=op.f('pk_patient_name_words'))
    )
    op.create_index('ix_patient_name_words_patient_id', 'patient_name_words', ['patient_id'], unique=False)
    op.execute(NAME_WORDS_FN)
    for statement in NAME_WORDS_TRIGGERS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS patients_name_words_update ON patients")
    op.execute("DROP TRIGGER IF EXISTS patients_name_words_insert ON patients")
    op.execute("DROP FUNCTION IF EXISTS patients_index_name_words()")
    op.drop_index('ix_patient_name_words_patient_id', table_name='patient_name_words')
    op.drop_table('patient_name_words')
    op.drop_index('ix_patient_name_terms_word_trgm', table_name='patient_name_terms', postgresql_using='gin', postgresql_ops={'word': 'gin_trgm_ops'})
    op.drop_table('patient_name_terms')
    op.drop_index('uq_patient_phones_one_primary', table_name='patient_phones', postgresql_where=sa.text('is_primary'))
    op.drop_index(op.f('ix_patient_phones_patient_id'), table_name='patient_phones')
    op.drop_index('ix_patient_phones_org_number', table_name='patient_phones')
    op.drop_index(op.f('ix_patient_phones_org_id'), table_name='patient_phones')
    op.drop_table('patient_phones')
    op.drop_index(op.f('ix_patient_identifiers_patient_id'), table_name='patient_identifiers')
    op.drop_index(op.f('ix_patient_identifiers_org_id'), table_name='patient_identifiers')
    op.drop_table('patient_identifiers')
    op.drop_index('uq_patient_emails_patient_email', table_name='patient_emails')
    op.drop_index('uq_patient_emails_one_primary', table_name='patient_emails', postgresql_where=sa.text('is_primary'))
    op.drop_index(op.f('ix_patient_emails_patient_id'), table_name='patient_emails')
    op.drop_index(op.f('ix_patient_emails_org_id'), table_name='patient_emails')
    op.drop_index('ix_patient_emails_org_email', table_name='patient_emails')
    op.drop_table('patient_emails')
    op.drop_index('ix_consents_patient_key_at', table_name='consents')
    op.drop_index('ix_consents_org_recorded_at', table_name='consents')
    op.drop_index(op.f('ix_consents_org_id'), table_name='consents')
    op.drop_table('consents')
    op.drop_index('ix_patients_tags', table_name='patients', postgresql_using='gin')
    op.drop_index('ix_patients_search_name_trgm', table_name='patients', postgresql_using='gin', postgresql_ops={'search_name': 'gin_trgm_ops'})
    op.drop_index(op.f('ix_patients_org_id'), table_name='patients')
    op.drop_index('ix_patients_org_family_given', table_name='patients')
    op.drop_index('ix_patients_org_created_at', table_name='patients')
    op.drop_index('ix_patients_org_birth_date', table_name='patients')
    op.drop_index('ix_patients_merged_into_id', table_name='patients')
    op.drop_table('patients')
    op.execute("DROP FUNCTION IF EXISTS prm_unaccent(text)")
