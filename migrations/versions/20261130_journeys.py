"""journeys: definitions with a draft and frozen versions, instances (enrolments) whose entry
policy is a unique (journey, patient, entry_key) with CHECKs on the key's form, step runs unique per
(instance, step, occurrence), and stage changes.

Revision ID: 20261130_journeys
Revises: 20261130_structure_layering
Create Date: 2026-11-30 05:08:01.313954
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261130_journeys'
down_revision = '20261130_structure_layering'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('journeys',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('entry_policy', sa.String(length=32), nullable=False),
    sa.Column('entry_key_field', sa.String(length=120), nullable=True),
    sa.Column('draft', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('active_version', sa.Integer(), nullable=True),
    sa.Column('latest_version', sa.Integer(), server_default='0', nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("entry_policy <> 'once_per_key' OR entry_key_field IS NOT NULL", name=op.f('ck_journeys_entry_key_field')),
    sa.CheckConstraint("entry_policy IN ('once_per_patient', 'once_per_key', 'every_time')", name=op.f('ck_journeys_entry_policy')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_journeys_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journeys')),
    sa.UniqueConstraint('org_id', 'key', name='uq_journeys_org_key')
    )
    op.create_index(op.f('ix_journeys_org_id'), 'journeys', ['org_id'], unique=False)
    op.create_table('journey_versions',
    sa.Column('journey_id', sa.UUID(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('definition', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('trigger_events', postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=80), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint('version >= 1', name=op.f('ck_journey_versions_version')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_versions_journey_id_journeys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_journey_versions_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_versions')),
    sa.UniqueConstraint('journey_id', 'version', name='uq_journey_versions_journey_version')
    )
    op.create_index(op.f('ix_journey_versions_org_id'), 'journey_versions', ['org_id'], unique=False)
    op.create_index('ix_journey_versions_trigger_events', 'journey_versions', ['trigger_events'], unique=False, postgresql_using='gin')
    op.create_table('journey_instances',
    sa.Column('journey_id', sa.UUID(), nullable=False),
    sa.Column('version_id', sa.UUID(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='active', nullable=False),
    sa.Column('entry_policy', sa.String(length=32), nullable=False),
    sa.Column('entry_key', sa.String(length=200), nullable=False),
    sa.Column('source_event_id', sa.UUID(), nullable=True),
    sa.Column('source_event_type', sa.String(length=100), nullable=True),
    sa.Column('current_stage', sa.String(length=64), nullable=True),
    sa.Column('context', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('waiting_for', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('enrolled_by', sa.String(length=80), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exited_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_reason', sa.String(length=64), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("(entry_policy = 'once_per_patient' AND entry_key = 'patient') OR (entry_policy = 'once_per_key' AND entry_key ~ '^key:.') OR (entry_policy = 'every_time' AND entry_key ~ '^(event|manual):.')", name=op.f('ck_journey_instances_entry_key_form')),
    sa.CheckConstraint("entry_policy IN ('once_per_patient', 'once_per_key', 'every_time')", name=op.f('ck_journey_instances_entry_policy')),
    sa.CheckConstraint("status IN ('active', 'completed', 'exited')", name=op.f('ck_journey_instances_status')),
    sa.ForeignKeyConstraint(['journey_id'], ['journeys.id'], name=op.f('fk_journey_instances_journey_id_journeys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_journey_instances_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_journey_instances_patient_id_patients'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['journey_versions.id'], name=op.f('fk_journey_instances_version_id_journey_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_instances')),
    sa.UniqueConstraint('journey_id', 'patient_id', 'entry_key', name='uq_journey_instances_entry')
    )
    op.create_index('ix_journey_instances_journey_status', 'journey_instances', ['journey_id', 'status'], unique=False)
    op.create_index(op.f('ix_journey_instances_org_id'), 'journey_instances', ['org_id'], unique=False)
    op.create_index('ix_journey_instances_org_patient_status', 'journey_instances', ['org_id', 'patient_id', 'status'], unique=False)
    op.create_table('journey_stage_changes',
    sa.Column('instance_id', sa.UUID(), nullable=False),
    sa.Column('from_stage', sa.String(length=64), nullable=True),
    sa.Column('to_stage', sa.String(length=64), nullable=False),
    sa.Column('cause', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=True),
    sa.Column('event_type', sa.String(length=100), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['journey_instances.id'], name=op.f('fk_journey_stage_changes_instance_id_journey_instances'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_journey_stage_changes_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_stage_changes'))
    )
    op.create_index('ix_journey_stage_changes_instance_at', 'journey_stage_changes', ['instance_id', 'at'], unique=False)
    op.create_index(op.f('ix_journey_stage_changes_org_id'), 'journey_stage_changes', ['org_id'], unique=False)
    op.create_table('journey_step_runs',
    sa.Column('instance_id', sa.UUID(), nullable=False),
    sa.Column('stage', sa.String(length=64), nullable=True),
    sa.Column('step_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('occurrence', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='scheduled', nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('outcome', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("kind IN ('send_notification', 'create_ticket', 'wait', 'wait_until', 'wait_for_event', 'branch', 'advance_stage', 'end')", name=op.f('ck_journey_step_runs_kind')),
    sa.CheckConstraint("status IN ('scheduled', 'succeeded', 'skipped', 'failed', 'cancelled')", name=op.f('ck_journey_step_runs_status')),
    sa.CheckConstraint('occurrence >= 1', name=op.f('ck_journey_step_runs_occurrence')),
    sa.ForeignKeyConstraint(['instance_id'], ['journey_instances.id'], name=op.f('fk_journey_step_runs_instance_id_journey_instances'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_journey_step_runs_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_journey_step_runs')),
    sa.UniqueConstraint('instance_id', 'step_id', 'occurrence', name='uq_journey_step_runs_occurrence')
    )
    op.create_index('ix_journey_step_runs_instance_created', 'journey_step_runs', ['instance_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_journey_step_runs_org_id'), 'journey_step_runs', ['org_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_journey_step_runs_org_id'), table_name='journey_step_runs')
    op.drop_index('ix_journey_step_runs_instance_created', table_name='journey_step_runs')
    op.drop_table('journey_step_runs')
    op.drop_index(op.f('ix_journey_stage_changes_org_id'), table_name='journey_stage_changes')
    op.drop_index('ix_journey_stage_changes_instance_at', table_name='journey_stage_changes')
    op.drop_table('journey_stage_changes')
    op.drop_index('ix_journey_instances_org_patient_status', table_name='journey_instances')
    op.drop_index(op.f('ix_journey_instances_org_id'), table_name='journey_instances')
    op.drop_index('ix_journey_instances_journey_status', table_name='journey_instances')
    op.drop_table('journey_instances')
    op.drop_index('ix_journey_versions_trigger_events', table_name='journey_versions', postgresql_using='gin')
    op.drop_index(op.f('ix_journey_versions_org_id'), table_name='journey_versions')
    op.drop_table('journey_versions')
    op.drop_index(op.f('ix_journeys_org_id'), table_name='journeys')
    op.drop_table('journeys')
