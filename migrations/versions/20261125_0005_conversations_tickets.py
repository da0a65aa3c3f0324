"""conversations and tickets: conversations (one open per patient and channel, assistant state),
tickets (SLA, optimistic version, full-text search), ticket comments; and the foreign key from
communications.conversation_id to conversations.

Revision ID: 20261125_0005
Revises: 20261125_0003
Create Date: 2026-11-25 14:49:07.499105
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '20261125_0005'
down_revision = '20261125_0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('conversations',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('assignee_id', sa.UUID(), nullable=True),
    sa.Column('bot_active', sa.Boolean(), server_default=sa.text('true'), nullable=False),
    sa.Column('bot_state', sa.String(length=32), server_default='idle', nullable=False),
    sa.Column('bot_context', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('handoff_reason', sa.String(length=32), nullable=True),
    sa.Column('last_inbound_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_outbound_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_message_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('unread_count', sa.Integer(), server_default='0', nullable=False),
    sa.Column('snoozed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("channel IN ('whatsapp', 'sms')", name=op.f('ck_conversations_channel')),
    sa.CheckConstraint("status IN ('open', 'pending', 'snoozed', 'closed')", name=op.f('ck_conversations_status')),
    sa.CheckConstraint('unread_count >= 0', name=op.f('ck_conversations_unread_count')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_conversations_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_conversations_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_conversations_patient_id_patients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversations'))
    )
    op.create_index('ix_conversations_org_assignee', 'conversations', ['org_id', 'assignee_id'], unique=False)
    op.create_index(op.f('ix_conversations_org_id'), 'conversations', ['org_id'], unique=False)
    op.create_index('ix_conversations_org_status_last', 'conversations', ['org_id', 'status', 'last_message_at'], unique=False)
    op.create_index('ix_conversations_patient_id', 'conversations', ['patient_id'], unique=False)
    op.create_index('uq_conversations_one_open', 'conversations', ['org_id', 'patient_id', 'channel'], unique=True, postgresql_where=sa.text("status <> 'closed'"))
    op.create_table('tickets',
    sa.Column('subject', sa.String(length=300), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('category', sa.String(length=64), server_default='general', nullable=False),
    sa.Column('priority', sa.String(length=16), server_default='normal', nullable=False),
    sa.Column('status', sa.String(length=16), server_default='open', nullable=False),
    sa.Column('source', sa.String(length=16), server_default='api', nullable=False),
    sa.Column('patient_id', sa.UUID(), nullable=True),
    sa.Column('conversation_id', sa.UUID(), nullable=True),
    sa.Column('assignee_id', sa.UUID(), nullable=True),
    sa.Column('auto_assigned_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('tags', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('urgent_keywords', sa.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('overdue_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_by_kind', sa.String(length=16), server_default='system', nullable=False),
    sa.Column('created_by_id', sa.UUID(), nullable=True),
    sa.Column('version', sa.Integer(), server_default='1', nullable=False),
    sa.Column('search_vector', postgresql.TSVECTOR(), sa.Computed("to_tsvector('simple', coalesce(subject, '') || ' ' || coalesce(description, ''))", persisted=True), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name=op.f('ck_tickets_priority')),
    sa.CheckConstraint("source IN ('api', 'bot_handoff', 'agent', 'system')", name=op.f('ck_tickets_source')),
    sa.CheckConstraint("status IN ('open', 'in_progress', 'waiting', 'resolved', 'closed')", name=op.f('ck_tickets_status')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_tickets_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['conversation_id'], ['conversations.id'], name=op.f('fk_tickets_conversation_id_conversations'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_tickets_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_tickets_patient_id_patients'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tickets'))
    )
    op.create_index('ix_tickets_conversation_id', 'tickets', ['conversation_id'], unique=False)
    op.create_index('ix_tickets_org_assignee_status', 'tickets', ['org_id', 'assignee_id', 'status'], unique=False)
    op.create_index('ix_tickets_org_category_auto', 'tickets', ['org_id', 'category', 'auto_assigned_at'], unique=False)
    op.create_index(op.f('ix_tickets_org_id'), 'tickets', ['org_id'], unique=False)
    op.create_index('ix_tickets_org_status_due', 'tickets', ['org_id', 'status', 'due_at'], unique=False)
    op.create_index('ix_tickets_patient_id', 'tickets', ['patient_id'], unique=False)
    op.create_index('ix_tickets_search_vector', 'tickets', ['search_vector'], unique=False, postgresql_using='gin')
    op.create_index('ix_tickets_tags', 'tickets', ['tags'], unique=False, postgresql_using='gin')
    op.create_table('ticket_comments',
    sa.Column('ticket_id', sa.UUID(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('internal', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('author_kind', sa.String(length=16), nullable=False),
    sa.Column('author_id', sa.UUID(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_ticket_comments_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['ticket_id'], ['tickets.id'], name=op.f('fk_ticket_comments_ticket_id_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ticket_comments'))
    )
    op.create_index(op.f('ix_ticket_comments_org_id'), 'ticket_comments', ['org_id'], unique=False)
    op.create_index('ix_ticket_comments_ticket_created', 'ticket_comments', ['ticket_id', 'created_at'], unique=False)
    op.create_foreign_key(op.f('fk_communications_conversation_id_conversations'), 'communications',
                          'conversations', ['conversation_id'], ['id'], ondelete='SET NULL')


def downgrade() -> None:
    op.drop_constraint(op.f('fk_communications_conversation_id_conversations'), 'communications',
                       type_='foreignkey')
    op.drop_table('ticket_comments')
    op.drop_table('tickets')
    op.drop_table('conversations')
