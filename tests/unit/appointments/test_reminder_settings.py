"""REMINDER_OFFSETS_MINUTES is validated when the settings load."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prm.settings import Settings


def test_reminder_offsets_are_validated_and_normalised() -> None:
    assert Settings(_env_file=None, reminder_offsets_minutes=" 1440, 120 ").reminder_offsets_minutes == "1440,120"  # type: ignore[call-arg]
    for bad in ("abc", "60,-5", "0", "1.5"):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, reminder_offsets_minutes=bad)  # type: ignore[call-arg]
