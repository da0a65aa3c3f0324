"""Intake's jobs: `intake.summarise` (the clinical summary of a submitted session)."""

from __future__ import annotations

from prm.intake.summaries import summarise

__all__ = ["summarise"]
