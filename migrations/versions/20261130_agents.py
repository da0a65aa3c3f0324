"""agents: tool runs (one row per tool call) and the `agent` role for AI agents' API keys.

Revision ID: 20261130_agents
Revises: 20261130_structure_org_settings
Create Date: 2026-11-30 06:15:19.759491
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261130_agents'
down_revision = '20261130_structure_org_settings'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agent_tool_runs',
    sa.Column('tool', sa.String(length=64), nullable=False),
    sa.Column('credential', sa.String(length=80), nullable=False),
    sa.Column('actor_role', sa.String(length=32), nullable=False),
    sa.Column('transport', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('input', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('input_sha256', sa.String(length=64), nullable=False),
    sa.Column('output_summary', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('output', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error_code', sa.String(length=64), nullable=True),
    sa.Column('error_status', sa.Integer(), nullable=True),
    sa.Column('error_detail', sa.String(length=500), nullable=True),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=True),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('patient_id', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("status IN ('succeeded', 'failed', 'denied', 'invalid')", name=op.f('ck_agent_tool_runs_status')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_agent_tool_runs_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_agent_tool_runs'))
    )
    op.create_index('ix_agent_tool_runs_org_created', 'agent_tool_runs', ['org_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_agent_tool_runs_org_id'), 'agent_tool_runs', ['org_id'], unique=False)
    op.create_index('uq_agent_tool_runs_idempotency', 'agent_tool_runs', ['org_id', 'credential', 'idempotency_key'], unique=True, postgresql_where=sa.text('idempotency_key IS NOT NULL'))

    for table in ("users", "api_keys"):
        op.drop_constraint(op.f(f"ck_{table}_role"), table, type_="check")
        op.create_check_constraint(op.f(f"ck_{table}_role"), table, "role IN ('admin', 'coordinator', 'practitioner', 'support_agent', 'integration', 'agent')")


def downgrade() -> None:
    for table in ("users", "api_keys"):
        op.drop_constraint(op.f(f"ck_{table}_role"), table, type_="check")
        op.create_check_constraint(op.f(f"ck_{table}_role"), table, "role IN ('admin', 'coordinator', 'practitioner', 'support_agent', 'integration')")
    op.drop_index('uq_agent_tool_runs_idempotency', table_name='agent_tool_runs', postgresql_where=sa.text('idempotency_key IS NOT NULL'))
    op.drop_index(op.f('ix_agent_tool_runs_org_id'), table_name='agent_tool_runs')
    op.drop_index('ix_agent_tool_runs_org_created', table_name='agent_tool_runs')
    op.drop_table('agent_tool_runs')
