"""integrations: outbound webhook endpoints, messages and their delivery attempts; n8n
integrations, workflow runs and their attempts.

Revision ID: 20261130_integrations
Revises: 20261125_0006
Create Date: 2026-11-30 05:14:09.691104
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261130_integrations'
down_revision = '20261125_0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('n8n_integrations',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('base_url', sa.String(length=2000), nullable=False),
    sa.Column('workflows', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('event_triggers', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('secret', sa.String(length=200), nullable=False),
    sa.Column('previous_secret', sa.String(length=200), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('callback_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('request_timeout_seconds', sa.Integer(), nullable=False),
    sa.Column('fallback', sa.String(length=16), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("fallback IN ('none', 'ticket', 'handoff')", name=op.f('ck_n8n_integrations_fallback')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_n8n_integrations_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_n8n_integrations')),
    sa.UniqueConstraint('org_id', 'name', name=op.f('uq_n8n_integrations_org_id_name'))
    )
    op.create_index(op.f('ix_n8n_integrations_org_id'), 'n8n_integrations', ['org_id'], unique=False)
    op.create_table('webhook_endpoints',
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('event_types', postgresql.ARRAY(sa.String(length=100)), nullable=False),
    sa.Column('secret', sa.String(length=100), nullable=False),
    sa.Column('previous_secret', sa.String(length=100), nullable=True),
    sa.Column('previous_secret_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('enabled', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('disabled_reason', sa.String(length=200), nullable=True),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_webhook_endpoints_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints'))
    )
    op.create_index(op.f('ix_webhook_endpoints_org_id'), 'webhook_endpoints', ['org_id'], unique=False)
    op.create_table('n8n_workflow_runs',
    sa.Column('integration_id', sa.UUID(), nullable=False),
    sa.Column('workflow_key', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('data', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('source_event_id', sa.UUID(), nullable=True),
    sa.Column('patient_id', sa.UUID(), nullable=True),
    sa.Column('conversation_id', sa.UUID(), nullable=True),
    sa.Column('token_nonce', sa.String(length=64), nullable=False),
    sa.Column('deadline_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('last_error', sa.String(length=200), nullable=True),
    sa.Column('action', sa.String(length=32), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('result_status', sa.Integer(), nullable=True),
    sa.Column('callback_sha256', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'succeeded', 'failed', 'timed_out')", name=op.f('ck_n8n_workflow_runs_status')),
    sa.ForeignKeyConstraint(['integration_id'], ['n8n_integrations.id'], name=op.f('fk_n8n_workflow_runs_integration_id_n8n_integrations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_n8n_workflow_runs_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_n8n_workflow_runs'))
    )
    op.create_index('ix_n8n_workflow_runs_org_created', 'n8n_workflow_runs', ['org_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_n8n_workflow_runs_org_id'), 'n8n_workflow_runs', ['org_id'], unique=False)
    op.create_index('uq_n8n_workflow_runs_event', 'n8n_workflow_runs', ['integration_id', 'workflow_key', 'source_event_id'], unique=True, postgresql_where=sa.text('source_event_id IS NOT NULL'))
    op.create_table('webhook_messages',
    sa.Column('endpoint_id', sa.UUID(), nullable=False),
    sa.Column('event_id', sa.UUID(), nullable=True),
    sa.Column('event_type', sa.String(length=100), nullable=False),
    sa.Column('payload', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_webhook_messages_status')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_messages_endpoint_id_webhook_endpoints'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_webhook_messages_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_messages')),
    sa.UniqueConstraint('endpoint_id', 'event_id', name=op.f('uq_webhook_messages_endpoint_id_event_id'))
    )
    op.create_index('ix_webhook_messages_endpoint_created', 'webhook_messages', ['endpoint_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_webhook_messages_org_id'), 'webhook_messages', ['org_id'], unique=False)
    op.create_table('n8n_workflow_attempts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('run_id', sa.UUID(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('response_excerpt', sa.String(length=2048), nullable=True),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_n8n_workflow_attempts_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['n8n_workflow_runs.id'], name=op.f('fk_n8n_workflow_attempts_run_id_n8n_workflow_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_n8n_workflow_attempts'))
    )
    op.create_index('ix_n8n_workflow_attempts_run', 'n8n_workflow_attempts', ['run_id', 'attempted_at'], unique=False)
    op.create_table('webhook_attempts',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('message_id', sa.UUID(), nullable=False),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('response_excerpt', sa.String(length=2048), nullable=True),
    sa.ForeignKeyConstraint(['message_id'], ['webhook_messages.id'], name=op.f('fk_webhook_attempts_message_id_webhook_messages'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_webhook_attempts_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_attempts'))
    )
    op.create_index('ix_webhook_attempts_message', 'webhook_attempts', ['message_id', 'attempted_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_attempts_message', table_name='webhook_attempts')
    op.drop_table('webhook_attempts')
    op.drop_index('ix_n8n_workflow_attempts_run', table_name='n8n_workflow_attempts')
    op.drop_table('n8n_workflow_attempts')
    op.drop_index(op.f('ix_webhook_messages_org_id'), table_name='webhook_messages')
    op.drop_index('ix_webhook_messages_endpoint_created', table_name='webhook_messages')
    op.drop_table('webhook_messages')
    op.drop_index('uq_n8n_workflow_runs_event', table_name='n8n_workflow_runs', postgresql_where=sa.text('source_event_id IS NOT NULL'))
    op.drop_index(op.f('ix_n8n_workflow_runs_org_id'), table_name='n8n_workflow_runs')
    op.drop_index('ix_n8n_workflow_runs_org_created', table_name='n8n_workflow_runs')
    op.drop_table('n8n_workflow_runs')
    op.drop_index(op.f('ix_webhook_endpoints_org_id'), table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
    op.drop_index(op.f('ix_n8n_integrations_org_id'), table_name='n8n_integrations')
    op.drop_table('n8n_integrations')
