"""intake: questionnaires and their frozen versions, sessions (unique external reference per
organisation, a version for If-Match), records unique per (session, client item id), summaries; the
consent purpose `intake` (data sharing) allowed by the consents' CHECKs.

Revision ID: 20261130_intake
Revises: 20261130_fhir
Create Date: 2026-11-30 08:12:20.240687
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261130_intake'
down_revision = '20261130_fhir'
branch_labels = None
depends_on = None


OLD_DATA_SHARING = "'ai_processing', 'ehr_export'"
NEW_DATA_SHARING = "'ai_processing', 'ehr_export', 'intake'"


def _consent_checks(data_sharing: str) -> None:
    op.drop_constraint(op.f("ck_consents_purpose"), "consents", type_="check")
    op.drop_constraint(op.f("ck_consents_channel_matches_purpose"), "consents", type_="check")
    op.create_check_constraint(op.f("ck_consents_purpose"), "consents",
                               f"purpose IN ('care', 'reminders', 'marketing', {data_sharing})")
    op.create_check_constraint(
        op.f("ck_consents_channel_matches_purpose"), "consents",
        f"(channel IS NULL AND purpose IN ({data_sharing})) "
        "OR (channel IS NOT NULL AND purpose IN ('care', 'reminders', 'marketing'))")


def upgrade() -> None:
    _consent_checks(NEW_DATA_SHARING)
    op.create_table('intake_questionnaires',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('latest_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_intake_questionnaires_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_questionnaires')),
    sa.UniqueConstraint('org_id', 'key', name='uq_intake_questionnaires_org_key')
    )
    op.create_index(op.f('ix_intake_questionnaires_org_id'), 'intake_questionnaires', ['org_id'], unique=False)
    op.create_table('intake_questionnaire_versions',
    sa.Column('questionnaire_id', sa.UUID(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('items', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=80), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint('version >= 1', name=op.f('ck_intake_questionnaire_versions_version')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_intake_questionnaire_versions_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['questionnaire_id'], ['intake_questionnaires.id'], name=op.f('fk_intake_questionnaire_versions_questionnaire_id_intake_questionnaires'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_questionnaire_versions')),
    sa.UniqueConstraint('questionnaire_id', 'version', name='uq_intake_questionnaire_versions_version')
    )
    op.create_index(op.f('ix_intake_questionnaire_versions_org_id'), 'intake_questionnaire_versions', ['org_id'], unique=False)
    op.create_table('intake_sessions',
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('link_status', sa.String(length=16), server_default='unlinked', nullable=False),
    sa.Column('patient_id', sa.UUID(), nullable=True),
    sa.Column('assigned_practitioner_id', sa.UUID(), nullable=True),
    sa.Column('questionnaire_id', sa.UUID(), nullable=True),
    sa.Column('questionnaire_version', sa.Integer(), nullable=True),
    sa.Column('contact', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=True),
    sa.Column('external_ref', sa.String(length=200), nullable=True),
    sa.Column('communication_id', sa.UUID(), nullable=True),
    sa.Column('appointment_id', sa.UUID(), nullable=True),
    sa.Column('consent_recorded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('match_candidates', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('summary_status', sa.String(length=16), server_default='none', nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("(link_status = 'linked') = (patient_id IS NOT NULL)", name=op.f('ck_intake_sessions_linked_has_patient')),
    sa.CheckConstraint("(status = 'submitted') = (submitted_at IS NOT NULL)", name=op.f('ck_intake_sessions_submitted_at')),
    sa.CheckConstraint("link_status IN ('unlinked', 'linked', 'needs_review')", name=op.f('ck_intake_sessions_link_status')),
    sa.CheckConstraint("source IN ('web_form', 'whatsapp', 'voice', 'staff')", name=op.f('ck_intake_sessions_source')),
    sa.CheckConstraint("status IN ('open', 'submitted', 'cancelled')", name=op.f('ck_intake_sessions_status')),
    sa.CheckConstraint("summary_status IN ('none', 'pending', 'ready', 'failed')", name=op.f('ck_intake_sessions_summary_status')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_intake_sessions_appointment_id_appointments'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['assigned_practitioner_id'], ['practitioners.id'], name=op.f('fk_intake_sessions_assigned_practitioner_id_practitioners'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['communication_id'], ['communications.id'], name=op.f('fk_intake_sessions_communication_id_communications'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_intake_sessions_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_intake_sessions_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['questionnaire_id'], ['intake_questionnaires.id'], name=op.f('fk_intake_sessions_questionnaire_id_intake_questionnaires'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_sessions')),
    sa.UniqueConstraint('org_id', 'external_ref', name='uq_intake_sessions_org_external_ref')
    )
    op.create_index(op.f('ix_intake_sessions_org_id'), 'intake_sessions', ['org_id'], unique=False)
    op.create_index('ix_intake_sessions_org_patient', 'intake_sessions', ['org_id', 'patient_id'], unique=False)
    op.create_index('ix_intake_sessions_org_status_created', 'intake_sessions', ['org_id', 'status', 'created_at'], unique=False)
    op.create_table('intake_records',
    sa.Column('session_id', sa.UUID(), nullable=False),
    sa.Column('client_item_id', sa.String(length=100), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('revision', sa.Integer(), server_default='1', nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("type IN ('chief_complaint', 'symptom', 'medication', 'allergy', 'condition', 'family_history', 'social_history', 'vital', 'insurance', 'note', 'answer')", name=op.f('ck_intake_records_type')),
    sa.CheckConstraint('revision >= 1', name=op.f('ck_intake_records_revision')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_intake_records_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['intake_sessions.id'], name=op.f('fk_intake_records_session_id_intake_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_intake_records')),
    sa.UniqueConstraint('session_id', 'client_item_id', name='uq_intake_records_session_item')
    )
    op.create_index(op.f('ix_intake_records_org_id'), 'intake_records', ['org_id'], unique=False)
    op.create_table('intake_summaries',
    sa.Column('session_id', sa.UUID(), nullable=False),
    sa.Column('content', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('machine_generated', sa.Boolean(), nullable=False),
    sa.Column('generator', sa.String(length=80), nullable=False),
    sa.Column('edited', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('edited_by', sa.UUID(), nullable=True),
    sa.Column('generated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_intake_summaries_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['intake_sessions.id'], name=op.f('fk_intake_summaries_session_id_intake_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_intake_summaries'))
    )
    op.create_index(op.f('ix_intake_summaries_org_id'), 'intake_summaries', ['org_id'], unique=False)


def downgrade() -> None:
    op.execute("DELETE FROM consents WHERE purpose = 'intake'")
    _consent_checks(OLD_DATA_SHARING)
    op.drop_index(op.f('ix_intake_summaries_org_id'), table_name='intake_summaries')
    op.drop_table('intake_summaries')
    op.drop_index(op.f('ix_intake_records_org_id'), table_name='intake_records')
    op.drop_table('intake_records')
    op.drop_index('ix_intake_sessions_org_status_created', table_name='intake_sessions')
    op.drop_index('ix_intake_sessions_org_patient', table_name='intake_sessions')
    op.drop_index(op.f('ix_intake_sessions_org_id'), table_name='intake_sessions')
    op.drop_table('intake_sessions')
    op.drop_index(op.f('ix_intake_questionnaire_versions_org_id'), table_name='intake_questionnaire_versions')
    op.drop_table('intake_questionnaire_versions')
    op.drop_index(op.f('ix_intake_questionnaires_org_id'), table_name='intake_questionnaires')
    op.drop_table('intake_questionnaires')
