"""Scheduling and appointments: practitioners, locations, services, availability, booking, reminders."""
