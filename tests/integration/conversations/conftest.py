from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from prm.core import clock
from prm.settings import Settings
from tests.fixtures.conversation_fixtures import twilio_signing

# Wednesday 25 November 2026, 09:00 UTC = 10:00 in Madrid.
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


@pytest.fixture
def signing(settings: Settings) -> Iterator[str]:
    with twilio_signing(settings) as token:
        yield token


@pytest.fixture
def frozen() -> Iterator[clock.FrozenClock]:
    with clock.frozen(T0) as c:
        yield c
