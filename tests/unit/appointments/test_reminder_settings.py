"""REMINDER_OFFSETS is validated and normalised when the settings load; the old name still works."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from prm.settings import Settings


def test_reminder_offsets_are_validated_and_normalised(monkeypatch) -> None:
    assert Settings(_env_file=None).reminder_offsets == "1d,2h"  # type: ignore[call-arg]
    assert Settings(_env_file=None, reminder_offsets=" 2H, 1d ,30").reminder_offsets == "1d,2h,30m"  # type: ignore[call-arg]
    assert Settings(_env_file=None, reminder_offsets="").reminder_offsets == ""  # type: ignore[call-arg]
    monkeypatch.setenv("REMINDER_OFFSETS_MINUTES", "1440, 120")  # the old variable: plain minutes
    assert Settings(_env_file=None).reminder_offsets == "1440m,120m"  # type: ignore[call-arg]
    for bad in ("abc", "60,-5", "0", "1.5", "1w", "0d", "2 days"):
        with pytest.raises(ValidationError, match="REMINDER_OFFSETS"):
            Settings(_env_file=None, reminder_offsets=bad)  # type: ignore[call-arg]
