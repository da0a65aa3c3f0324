"""media: stored objects (one per organisation and SHA-256: `media_blobs`) and media items linked to
a patient and, without foreign keys (higher modules), to a conversation, message, ticket or intake
session; soft deletion with a purge marker; idempotent inbound attachments by `source_ref`.

Revision ID: 20261130_media
Revises: 20261130_delivery_attempts
Create Date: 2026-11-30 05:09:49
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '20261130_media'
down_revision = "20261130_delivery_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('media_blobs',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('storage_key', sa.String(length=300), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=True),
    sa.Column('stored_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("state IN ('pending', 'stored')", name=op.f('ck_media_blobs_state')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_media_blobs_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media_blobs'))
    )
    op.create_index(op.f('ix_media_blobs_org_id'), 'media_blobs', ['org_id'], unique=False)
    op.create_index('uq_media_blobs_org_sha256', 'media_blobs', ['org_id', 'sha256'], unique=True)
    op.create_table('media',
    sa.Column('blob_id', sa.UUID(), nullable=True),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('source', sa.String(length=16), server_default='upload', nullable=False),
    sa.Column('deduplicated', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('failure_code', sa.String(length=64), nullable=True),
    sa.Column('failure_detail', sa.String(length=300), nullable=True),
    sa.Column('patient_id', sa.UUID(), nullable=True),
    sa.Column('conversation_id', sa.UUID(), nullable=True),
    sa.Column('message_id', sa.UUID(), nullable=True),
    sa.Column('ticket_id', sa.UUID(), nullable=True),
    sa.Column('intake_session_id', sa.UUID(), nullable=True),
    sa.Column('source_ref', sa.String(length=200), nullable=True),
    sa.Column('source_url', sa.String(length=2000), nullable=True),
    sa.Column('position', sa.SmallInteger(), nullable=True),
    sa.Column('fetch_attempts', sa.SmallInteger(), server_default='0', nullable=False),
    sa.Column('created_by_kind', sa.String(length=16), server_default='system', nullable=False),
    sa.Column('created_by_id', sa.UUID(), nullable=True),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('deleted_by_id', sa.UUID(), nullable=True),
    sa.Column('purged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("source IN ('upload', 'whatsapp', 'sms', 'email', 'voice')", name=op.f('ck_media_source')),
    sa.CheckConstraint("status IN ('pending', 'available', 'rejected')", name=op.f('ck_media_status')),
    sa.ForeignKeyConstraint(['blob_id'], ['media_blobs.id'], name=op.f('fk_media_blob_id_media_blobs'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_media_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_media_patient_id_patients'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_media'))
    )
    op.create_index('ix_media_blob_id', 'media', ['blob_id'], unique=False)
    op.create_index('ix_media_deleted_at', 'media', ['deleted_at'], unique=False, postgresql_where=sa.text('deleted_at IS NOT NULL AND purged_at IS NULL'))
    op.create_index('ix_media_org_conversation', 'media', ['org_id', 'conversation_id'], unique=False)
    op.create_index(op.f('ix_media_org_id'), 'media', ['org_id'], unique=False)
    op.create_index('ix_media_org_intake_session', 'media', ['org_id', 'intake_session_id'], unique=False)
    op.create_index('ix_media_org_message', 'media', ['org_id', 'message_id'], unique=False)
    op.create_index('ix_media_org_patient_created', 'media', ['org_id', 'patient_id', 'created_at'], unique=False)
    op.create_index('ix_media_org_ticket', 'media', ['org_id', 'ticket_id'], unique=False)
    op.create_index('uq_media_org_source_ref', 'media', ['org_id', 'source_ref'], unique=True, postgresql_where=sa.text('source_ref IS NOT NULL'))


def downgrade() -> None:
    op.drop_index('uq_media_org_source_ref', table_name='media', postgresql_where=sa.text('source_ref IS NOT NULL'))
    op.drop_index('ix_media_org_ticket', table_name='media')
    op.drop_index('ix_media_org_patient_created', table_name='media')
    op.drop_index('ix_media_org_message', table_name='media')
    op.drop_index('ix_media_org_intake_session', table_name='media')
    op.drop_index(op.f('ix_media_org_id'), table_name='media')
    op.drop_index('ix_media_org_conversation', table_name='media')
    op.drop_index('ix_media_deleted_at', table_name='media', postgresql_where=sa.text('deleted_at IS NOT NULL AND purged_at IS NULL'))
    op.drop_index('ix_media_blob_id', table_name='media')
    op.drop_table('media')
    op.drop_index('uq_media_blobs_org_sha256', table_name='media_blobs')
    op.drop_index(op.f('ix_media_blobs_org_id'), table_name='media_blobs')
    op.drop_table('media_blobs')
