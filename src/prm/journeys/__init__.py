"""Journeys: versioned care pathways driven by domain events (see docs/journeys.md)."""
