"""deploy/.env.example documents every setting, and only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from prm.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / ".env.example"


def _documented() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_lists_every_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    documented = _documented()
    assert fields - documented == set(), "settings missing from deploy/.env.example"
    assert documented - fields == set(), "deploy/.env.example lists variables the service does not read"


def test_env_example_values_parse() -> None:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and match.group(2):
            values[match.group(1).lower()] = match.group(2)
    Settings(_env_file=None, **values)  # type: ignore[call-arg]
