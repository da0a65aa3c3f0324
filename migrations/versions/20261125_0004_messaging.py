"""messaging: communications, inbound provider events, channel configuration, sandbox outbox,
notification templates and batches

Revision ID: 20261125_0004
Revises: 20261125_0002
Create Date: 2026-11-25 14:46:30.979168
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "20261125_0004"
down_revision = "20261125_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "channel_configs",
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=True),
        sa.Column("sender_name", sa.String(length=200), nullable=True),
        sa.Column("webhook_secret", sa.String(length=200), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('sms', 'whatsapp', 'email', 'voice')", name=op.f("ck_channel_configs_channel")
        ),
        sa.CheckConstraint(
            "provider IS NULL OR provider IN ('sandbox', 'twilio', 'smtp')",
            name=op.f("ck_channel_configs_provider"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_channel_configs_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_channel_configs")),
        sa.UniqueConstraint("org_id", "channel", name="uq_channel_configs_org_channel"),
    )
    op.create_index(op.f("ix_channel_configs_org_id"), "channel_configs", ["org_id"], unique=False)
    op.create_index(
        "uq_channel_configs_channel_sender",
        "channel_configs",
        ["channel", "sender"],
        unique=True,
        postgresql_where=sa.text("sender IS NOT NULL AND channel <> 'email'"),
    )
    op.create_table(
        "notification_batches",
        sa.Column("template_key", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=True),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("variables", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("selection", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "purpose IN ('care', 'reminders', 'marketing')", name=op.f("ck_notification_batches_purpose")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_notification_batches_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_batches")),
    )
    op.create_index(op.f("ix_notification_batches_org_id"), "notification_batches", ["org_id"], unique=False)
    op.create_table(
        "notification_templates",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("locale", sa.String(length=35), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("variables", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("content_sid", sa.String(length=64), nullable=True),
        sa.Column("content_variables", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("description", sa.String(length=500), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('sms', 'whatsapp', 'email', 'voice')", name=op.f("ck_notification_templates_channel")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_notification_templates_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_templates")),
        sa.UniqueConstraint("org_id", "key", "channel", "locale", name="uq_notification_templates_key"),
    )
    op.create_index(
        op.f("ix_notification_templates_org_id"), "notification_templates", ["org_id"], unique=False
    )
    op.create_table(
        "communications",
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("from_address", sa.String(length=320), nullable=True),
        sa.Column("subject", sa.String(length=500), nullable=True),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column(
            "media", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'"), nullable=False
        ),
        sa.Column(
            "attachments",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'"),
            nullable=False,
        ),
        sa.Column("content_sid", sa.String(length=64), nullable=True),
        sa.Column("content_variables", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("template_key", sa.String(length=100), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column(
            "details", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("created_by", sa.String(length=80), nullable=True),
        sa.Column("send_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "channel IN ('sms', 'whatsapp', 'email', 'voice')", name=op.f("ck_communications_channel")
        ),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_communications_direction")),
        sa.CheckConstraint(
            "purpose IS NULL OR purpose IN ('care', 'reminders', 'marketing')",
            name=op.f("ck_communications_purpose"),
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'undelivered', 'cancelled', 'received')",
            name=op.f("ck_communications_status"),
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_communications_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_communications_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communications")),
    )
    op.create_index("ix_communications_conversation_id", "communications", ["conversation_id"], unique=False)
    op.create_index(
        "ix_communications_org_channel_at",
        "communications",
        ["org_id", "channel", "created_at"],
        unique=False,
    )
    op.create_index(op.f("ix_communications_org_id"), "communications", ["org_id"], unique=False)
    op.create_index(
        "ix_communications_org_patient_at",
        "communications",
        ["org_id", "patient_id", "created_at"],
        unique=False,
    )
    op.create_index("ix_communications_org_status", "communications", ["org_id", "status"], unique=False)
    op.create_index(
        "ix_communications_patient_inbound",
        "communications",
        ["patient_id", "channel", "created_at"],
        unique=False,
        postgresql_where=sa.text("direction = 'inbound'"),
    )
    op.create_index(
        "uq_communications_org_idempotency_key",
        "communications",
        ["org_id", "idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "uq_communications_provider_message_id",
        "communications",
        ["provider", "provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.create_table(
        "inbound_events",
        sa.Column("org_id", sa.UUID(), nullable=True),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("communication_id", sa.UUID(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["communication_id"],
            ["communications.id"],
            name=op.f("fk_inbound_events_communication_id_communications"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_inbound_events_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_events")),
        sa.UniqueConstraint("provider", "external_id", name="uq_inbound_events_provider_external_id"),
    )
    op.create_index(
        "ix_inbound_events_org_received_at", "inbound_events", ["org_id", "received_at"], unique=False
    )
    op.create_table(
        "notification_batch_items",
        sa.Column("batch_id", sa.UUID(), nullable=False),
        sa.Column("patient_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("communication_id", sa.UUID(), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'queued', 'refused', 'failed')",
            name=op.f("ck_notification_batch_items_status"),
        ),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["notification_batches.id"],
            name=op.f("fk_notification_batch_items_batch_id_notification_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["communication_id"],
            ["communications.id"],
            name=op.f("fk_notification_batch_items_communication_id_communications"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_notification_batch_items_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["patient_id"],
            ["patients.id"],
            name=op.f("fk_notification_batch_items_patient_id_patients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_batch_items")),
        sa.UniqueConstraint("batch_id", "patient_id", name="uq_notification_batch_items_batch_patient"),
    )
    op.create_index(
        "ix_notification_batch_items_batch_status",
        "notification_batch_items",
        ["batch_id", "status"],
        unique=False,
    )
    op.create_index(
        op.f("ix_notification_batch_items_org_id"), "notification_batch_items", ["org_id"], unique=False
    )
    op.create_index(
        "ix_notification_batch_items_patient_id", "notification_batch_items", ["patient_id"], unique=False
    )
    op.create_table(
        "sandbox_outbox",
        sa.Column("communication_id", sa.UUID(), nullable=True),
        sa.Column("patient_id", sa.UUID(), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("to_address", sa.String(length=320), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("org_id", sa.UUID(), nullable=False),
        sa.ForeignKeyConstraint(
            ["communication_id"],
            ["communications.id"],
            name=op.f("fk_sandbox_outbox_communication_id_communications"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"],
            ["organisations.id"],
            name=op.f("fk_sandbox_outbox_org_id_organisations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sandbox_outbox")),
    )
    op.create_index("ix_sandbox_outbox_org_at", "sandbox_outbox", ["org_id", "recorded_at"], unique=False)
    op.create_index(op.f("ix_sandbox_outbox_org_id"), "sandbox_outbox", ["org_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sandbox_outbox_org_id"), table_name="sandbox_outbox")
    op.drop_index("ix_sandbox_outbox_org_at", table_name="sandbox_outbox")
    op.drop_table("sandbox_outbox")
    op.drop_index("ix_notification_batch_items_patient_id", table_name="notification_batch_items")
    op.drop_index(op.f("ix_notification_batch_items_org_id"), table_name="notification_batch_items")
    op.drop_index("ix_notification_batch_items_batch_status", table_name="notification_batch_items")
    op.drop_table("notification_batch_items")
    op.drop_index("ix_inbound_events_org_received_at", table_name="inbound_events")
    op.drop_table("inbound_events")
    op.drop_index(
        "uq_communications_provider_message_id",
        table_name="communications",
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_communications_org_idempotency_key",
        table_name="communications",
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.drop_index(
        "ix_communications_patient_inbound",
        table_name="communications",
        postgresql_where=sa.text("direction = 'inbound'"),
    )
    op.drop_index("ix_communications_org_status", table_name="communications")
    op.drop_index("ix_communications_org_patient_at", table_name="communications")
    op.drop_index(op.f("ix_communications_org_id"), table_name="communications")
    op.drop_index("ix_communications_org_channel_at", table_name="communications")
    op.drop_index("ix_communications_conversation_id", table_name="communications")
    op.drop_table("communications")
    op.drop_index(op.f("ix_notification_templates_org_id"), table_name="notification_templates")
    op.drop_table("notification_templates")
    op.drop_index(op.f("ix_notification_batches_org_id"), table_name="notification_batches")
    op.drop_table("notification_batches")
    op.drop_index("uq_channel_configs_channel_sender", table_name="channel_configs")
    op.drop_index(op.f("ix_channel_configs_org_id"), table_name="channel_configs")
    op.drop_table("channel_configs")
