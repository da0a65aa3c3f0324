"""`GET /slots?shape=full` is encoded by orjson straight from the slots: the same JSON pydantic wrote."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import TypeAdapter

from prm.appointments.router import full_answer
from prm.appointments.schemas import SlotRead
from prm.appointments.slots import Slot

SERVICE = uuid.uuid4()


def slot(start: datetime, zone: str) -> Slot:
    end = start + timedelta(minutes=30)
    tz = ZoneInfo(zone)
    return Slot(start, end, start.astimezone(tz), end.astimezone(tz), zone, uuid.uuid4(), uuid.uuid4())


def test_full_answer_is_the_json_pydantic_wrote() -> None:
    found = [
        slot(datetime(2026, 3, 30, 7, tzinfo=UTC), "Europe/Madrid"),
        slot(datetime(2026, 10, 25, 1, 15, tzinfo=UTC), "Europe/Madrid"),  # 02:15 the second time (fold=1)
        slot(datetime(2026, 3, 30, 7, tzinfo=UTC), "UTC"),  # local times with a zero offset: "Z" too
        slot(datetime(2026, 3, 30, 7, 0, 30, 250, tzinfo=UTC), "Asia/Kolkata"),  # seconds, microseconds, +05:30
        slot(datetime(2026, 3, 30, 7, tzinfo=UTC), "America/St_Johns"),  # -02:30
    ]
    expected = TypeAdapter(list[SlotRead]).dump_json([SlotRead(service_id=SERVICE, **s._asdict()) for s in found])
    answer = full_answer(found, SERVICE)
    assert answer.body == expected
    assert answer.media_type == "application/json"
    assert b'"local_start":"2026-10-25T02:15:00+01:00"' in answer.body
