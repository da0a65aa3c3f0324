"""Notifications: templates per channel and locale, previews, single and batch sends."""
