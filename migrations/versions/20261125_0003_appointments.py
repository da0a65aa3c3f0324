"""appointments: practitioners, locations, services, availability, appointments (exclusion constraints), history, reminders

Revision ID: 20261125_0003
Revises: 20261125_0002
Create Date: 2026-11-25 14:46:09.394567
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

HOLDS_TIME = "status IN ('booked', 'confirmed', 'checked_in', 'completed')"
EXCLUDE_PRACTITIONER = (
    "ALTER TABLE appointments ADD CONSTRAINT ex_appointments_practitioner_time EXCLUDE USING gist "
    "(practitioner_id WITH =, tstzrange(blocked_from, blocked_until, '[)') WITH &&) "
    f"WHERE ({HOLDS_TIME})"
)
EXCLUDE_PATIENT = (
    "ALTER TABLE appointments ADD CONSTRAINT ex_appointments_patient_time EXCLUDE USING gist "
    "(patient_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&) "
    f"WHERE ({HOLDS_TIME})"
)

revision = '20261125_0003'
down_revision = '20261125_0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('locations',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.Text(), server_default='', nullable=False),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('is_virtual', sa.Boolean(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_locations_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_locations'))
    )
    op.create_index(op.f('ix_locations_org_id'), 'locations', ['org_id'], unique=False)
    op.create_table('services',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('duration_minutes', sa.Integer(), nullable=False),
    sa.Column('buffer_before_minutes', sa.Integer(), nullable=False),
    sa.Column('buffer_after_minutes', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('min_notice_minutes', sa.Integer(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('slot_step_minutes', sa.Integer(), nullable=False),
    sa.Column('keywords', sa.ARRAY(sa.String(length=100)), server_default='{}', nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("mode IN ('in_person', 'video')", name=op.f('ck_services_mode')),
    sa.CheckConstraint('buffer_before_minutes >= 0 AND buffer_after_minutes >= 0', name=op.f('ck_services_buffers')),
    sa.CheckConstraint('duration_minutes > 0', name=op.f('ck_services_duration_positive')),
    sa.CheckConstraint('horizon_days > 0', name=op.f('ck_services_horizon')),
    sa.CheckConstraint('min_notice_minutes >= 0', name=op.f('ck_services_min_notice')),
    sa.CheckConstraint('slot_step_minutes > 0', name=op.f('ck_services_slot_step')),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_services_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_services'))
    )
    op.create_index(op.f('ix_services_org_id'), 'services', ['org_id'], unique=False)
    op.create_table('practitioners',
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('title', sa.String(length=100), server_default='', nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('user_id', sa.UUID(), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_practitioners_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_practitioners_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_practitioners'))
    )
    op.create_index(op.f('ix_practitioners_org_id'), 'practitioners', ['org_id'], unique=False)
    op.create_index(op.f('ix_practitioners_user_id'), 'practitioners', ['user_id'], unique=False)
    op.create_table('appointments',
    sa.Column('patient_id', sa.UUID(), nullable=False),
    sa.Column('practitioner_id', sa.UUID(), nullable=False),
    sa.Column('service_id', sa.UUID(), nullable=False),
    sa.Column('location_id', sa.UUID(), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('blocked_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('notes', sa.Text(), server_default='', nullable=False),
    sa.Column('source', sa.String(length=32), server_default='api', nullable=False),
    sa.Column('sequence', sa.Integer(), server_default='0', nullable=False),
    sa.Column('booked_by', sa.String(length=80), server_default='', nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('no_show_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancelled_by', sa.String(length=80), nullable=True),
    sa.Column('cancel_reason', sa.Text(), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("mode IN ('in_person', 'video')", name=op.f('ck_appointments_mode')),
    sa.CheckConstraint("status IN ('booked', 'confirmed', 'checked_in', 'completed', 'no_show', 'cancelled')", name=op.f('ck_appointments_status')),
    sa.CheckConstraint('blocked_from <= start_at AND end_at <= blocked_until', name=op.f('ck_appointments_blocked_covers')),
    sa.CheckConstraint('start_at < end_at', name=op.f('ck_appointments_times')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_appointments_location_id_locations'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_appointments_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['patient_id'], ['patients.id'], name=op.f('fk_appointments_patient_id_patients'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_appointments_practitioner_id_practitioners'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_appointments_service_id_services'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointments'))
    )
    op.create_index(op.f('ix_appointments_org_id'), 'appointments', ['org_id'], unique=False)
    op.create_index('ix_appointments_org_patient_start', 'appointments', ['org_id', 'patient_id', 'start_at'], unique=False)
    op.create_index('ix_appointments_org_practitioner_start', 'appointments', ['org_id', 'practitioner_id', 'start_at'], unique=False)
    op.create_table('availability_exceptions',
    sa.Column('practitioner_id', sa.UUID(), nullable=False),
    sa.Column('location_id', sa.UUID(), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=200), server_default='', nullable=False),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("kind = 'time_off' OR location_id IS NOT NULL", name=op.f('ck_availability_exceptions_extra_needs_location')),
    sa.CheckConstraint("kind IN ('time_off', 'extra_hours')", name=op.f('ck_availability_exceptions_kind')),
    sa.CheckConstraint('start_at < end_at', name=op.f('ck_availability_exceptions_times')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_availability_exceptions_location_id_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_availability_exceptions_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_availability_exceptions_practitioner_id_practitioners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_availability_exceptions'))
    )
    op.create_index(op.f('ix_availability_exceptions_org_id'), 'availability_exceptions', ['org_id'], unique=False)
    op.create_index('ix_availability_exceptions_practitioner', 'availability_exceptions', ['practitioner_id', 'start_at'], unique=False)
    op.create_table('availability_rules',
    sa.Column('practitioner_id', sa.UUID(), nullable=False),
    sa.Column('location_id', sa.UUID(), nullable=False),
    sa.Column('weekday', sa.SmallInteger(), nullable=False),
    sa.Column('start_time', sa.Time(), nullable=False),
    sa.Column('end_time', sa.Time(), nullable=False),
    sa.Column('valid_from', sa.Date(), nullable=True),
    sa.Column('valid_until', sa.Date(), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint('start_time < end_time', name=op.f('ck_availability_rules_times')),
    sa.CheckConstraint('valid_until IS NULL OR valid_from IS NULL OR valid_from <= valid_until', name=op.f('ck_availability_rules_validity')),
    sa.CheckConstraint('weekday BETWEEN 0 AND 6', name=op.f('ck_availability_rules_weekday')),
    sa.ForeignKeyConstraint(['location_id'], ['locations.id'], name=op.f('fk_availability_rules_location_id_locations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_availability_rules_org_id_organisations'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_availability_rules_practitioner_id_practitioners'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_availability_rules'))
    )
    op.create_index(op.f('ix_availability_rules_org_id'), 'availability_rules', ['org_id'], unique=False)
    op.create_index('ix_availability_rules_practitioner', 'availability_rules', ['practitioner_id', 'location_id'], unique=False)
    op.create_table('service_practitioners',
    sa.Column('service_id', sa.UUID(), nullable=False),
    sa.Column('practitioner_id', sa.UUID(), nullable=False),
    sa.ForeignKeyConstraint(['practitioner_id'], ['practitioners.id'], name=op.f('fk_service_practitioners_practitioner_id_practitioners'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['service_id'], ['services.id'], name=op.f('fk_service_practitioners_service_id_services'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('service_id', 'practitioner_id', name=op.f('pk_service_practitioners'))
    )
    op.create_table('appointment_changes',
    sa.Column('id', sa.BigInteger(), sa.Identity(always=False), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.Column('appointment_id', sa.UUID(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=False),
    sa.Column('old_start_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('old_end_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('new_start_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('new_end_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('actor', sa.String(length=80), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('details', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_appointment_changes_appointment_id_appointments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_appointment_changes_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointment_changes'))
    )
    op.create_index('ix_appointment_changes_appointment', 'appointment_changes', ['appointment_id', 'id'], unique=False)
    op.create_index('ix_appointment_changes_org_at', 'appointment_changes', ['org_id', 'at'], unique=False)
    op.create_table('appointment_reminders',
    sa.Column('appointment_id', sa.UUID(), nullable=False),
    sa.Column('offset_minutes', sa.Integer(), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('fired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('org_id', sa.UUID(), nullable=False),
    sa.CheckConstraint("status IN ('scheduled', 'due', 'void')", name=op.f('ck_appointment_reminders_status')),
    sa.ForeignKeyConstraint(['appointment_id'], ['appointments.id'], name=op.f('fk_appointment_reminders_appointment_id_appointments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['org_id'], ['organisations.id'], name=op.f('fk_appointment_reminders_org_id_organisations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_appointment_reminders'))
    )
    op.create_index('ix_appointment_reminders_appointment', 'appointment_reminders', ['appointment_id'], unique=False)
    op.create_index(op.f('ix_appointment_reminders_org_id'), 'appointment_reminders', ['org_id'], unique=False)
    # Double booking is impossible by construction (only for statuses that hold time):
    op.execute(EXCLUDE_PRACTITIONER)
    op.execute(EXCLUDE_PATIENT)


def downgrade() -> None:
    op.execute("ALTER TABLE appointments DROP CONSTRAINT ex_appointments_patient_time")
    op.execute("ALTER TABLE appointments DROP CONSTRAINT ex_appointments_practitioner_time")
    op.drop_index(op.f('ix_appointment_reminders_org_id'), table_name='appointment_reminders')
    op.drop_index('ix_appointment_reminders_appointment', table_name='appointment_reminders')
    op.drop_table('appointment_reminders')
    op.drop_index('ix_appointment_changes_org_at', table_name='appointment_changes')
    op.drop_index('ix_appointment_changes_appointment', table_name='appointment_changes')
    op.drop_table('appointment_changes')
    op.drop_table('service_practitioners')
    op.drop_index('ix_availability_rules_practitioner', table_name='availability_rules')
    op.drop_index(op.f('ix_availability_rules_org_id'), table_name='availability_rules')
    op.drop_table('availability_rules')
    op.drop_index('ix_availability_exceptions_practitioner', table_name='availability_exceptions')
    op.drop_index(op.f('ix_availability_exceptions_org_id'), table_name='availability_exceptions')
    op.drop_table('availability_exceptions')
    op.drop_index('ix_appointments_org_practitioner_start', table_name='appointments')
    op.drop_index('ix_appointments_org_patient_start', table_name='appointments')
    op.drop_index(op.f('ix_appointments_org_id'), table_name='appointments')
    op.drop_table('appointments')
    op.drop_index(op.f('ix_practitioners_user_id'), table_name='practitioners')
    op.drop_index(op.f('ix_practitioners_org_id'), table_name='practitioners')
    op.drop_table('practitioners')
    op.drop_index(op.f('ix_services_org_id'), table_name='services')
    op.drop_table('services')
    op.drop_index(op.f('ix_locations_org_id'), table_name='locations')
    op.drop_table('locations')
