"""Fixtures the cross-module scenarios in this folder share (the subfolders have their own)."""

from tests.fixtures.fhir_peer import fhir_peer  # noqa: F401  (fixture)
from tests.fixtures.messaging import messaging_settings, smtp_sink  # noqa: F401  (fixtures)
from tests.fixtures.voice_agent import voice_agent  # noqa: F401  (fixture)
