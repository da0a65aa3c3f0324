"""agents: the agent runner's runs (a goal through the LLM's tool-calling loop), tool runs linked to
the run and step that made them.

Revision ID: 20261130_agent_runner
Revises: 20261130_vector
Create Date: 2026-11-30 08:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261130_agent_runner"
down_revision = "20261130_vector"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_runs",
        sa.Column("credential", sa.String(length=80), nullable=False),
        sa.Column("actor_role", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("input_sha256", sa.String(length=64), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("patient_id", sa.UUID(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("steps", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("answer", sa.Text(), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_detail", sa.String(length=500), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint("status IN ('running', 'answered', 'step_limit', 'failed')",
                           name=op.f("ck_agent_runs_status")),
        sa.CheckConstraint("max_steps BETWEEN 1 AND 20", name=op.f("ck_agent_runs_max_steps")),
        sa.ForeignKeyConstraint(["org_id"], ["organisations.id"], name=op.f("fk_agent_runs_org_id_organisations"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_runs")),
    )
    op.create_index("ix_agent_runs_org_created", "agent_runs", ["org_id", "created_at"], unique=False)
    op.create_index(op.f("ix_agent_runs_org_id"), "agent_runs", ["org_id"], unique=False)
    op.create_index("uq_agent_runs_idempotency", "agent_runs", ["org_id", "credential", "idempotency_key"],
                    unique=True, postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.add_column("agent_tool_runs", sa.Column("agent_run_id", sa.UUID(), nullable=True))
    op.add_column("agent_tool_runs", sa.Column("step", sa.Integer(), nullable=True))
    op.create_foreign_key(op.f("fk_agent_tool_runs_agent_run_id_agent_runs"), "agent_tool_runs", "agent_runs",
                          ["agent_run_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_agent_tool_runs_agent_run", "agent_tool_runs", ["agent_run_id", "step"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_agent_tool_runs_agent_run", table_name="agent_tool_runs")
    op.drop_constraint(op.f("fk_agent_tool_runs_agent_run_id_agent_runs"), "agent_tool_runs", type_="foreignkey")
    op.drop_column("agent_tool_runs", "step")
    op.drop_column("agent_tool_runs", "agent_run_id")
    op.drop_index("uq_agent_runs_idempotency", table_name="agent_runs",
                  postgresql_where=sa.text("idempotency_key IS NOT NULL"))
    op.drop_index(op.f("ix_agent_runs_org_id"), table_name="agent_runs")
    op.drop_index("ix_agent_runs_org_created", table_name="agent_runs")
    op.drop_table("agent_runs")
