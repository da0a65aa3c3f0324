"""Intake statistics for a period: sessions by status and source, completion rate, median time to
submit, and the same per questionnaire. Sessions count in the period they were started (UTC days,
both ends included); two aggregate queries, whatever the number of sessions."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from prm.core import audit, clock, references
from prm.core.auth import Principal
from prm.core.errors import ValidationFailed
from prm.intake.models import SOURCES, STATUSES, IntakeSession, Questionnaire

MAX_DAYS = 366


def _rate(submitted: int, total: int, cancelled: int) -> float | None:
    considered = total - cancelled
    return round(submitted / considered, 4) if considered > 0 else None


def _median_minutes() -> ColumnElement[Any]:
    seconds = func.extract("epoch", IntakeSession.submitted_at - IntakeSession.created_at)
    return func.percentile_cont(0.5).within_group(seconds).filter(IntakeSession.status == "submitted")


async def statistics(session: AsyncSession, who: Principal, *, from_date: date | None, to_date: date | None,
                     questionnaire_id: uuid.UUID | None = None, source: str | None = None,
                     interval: str = "week") -> dict[str, Any]:
    today = clock.now().astimezone(UTC).date()
    to_date = to_date or today
    from_date = from_date or to_date - timedelta(days=29)
    if from_date > to_date:
        raise ValidationFailed.field("from_date", "must not be after to_date")
    if (to_date - from_date).days >= MAX_DAYS:
        raise ValidationFailed.field("to_date", f"the period may span at most {MAX_DAYS} days")
    await references.require(session, who.org_id, "questionnaire", questionnaire_id, field="questionnaire_id")
    start = datetime.combine(from_date, time(), tzinfo=UTC)
    end = datetime.combine(to_date + timedelta(days=1), time(), tzinfo=UTC)
    where = [IntakeSession.org_id == who.org_id, IntakeSession.created_at >= start, IntakeSession.created_at < end]
    if questionnaire_id is not None:
        where.append(IntakeSession.questionnaire_id == questionnaire_id)
    if source is not None:
        where.append(IntakeSession.source == source)
    rows = (await session.execute(
        select(IntakeSession.status, IntakeSession.source, func.count()).where(*where)
        .group_by(IntakeSession.status, IntakeSession.source))).all()
    by_status = dict.fromkeys(STATUSES, 0)
    by_source = dict.fromkeys(SOURCES, 0)
    for status, src, count in rows:
        by_status[status] += count
        by_source[src] += count
    total = sum(by_status.values())
    median = await session.scalar(select(_median_minutes()).where(*where))
    per_q = (await session.execute(
        select(IntakeSession.questionnaire_id, Questionnaire.key, func.count(),
               func.count().filter(IntakeSession.status == "submitted"),
               func.count().filter(IntakeSession.status == "cancelled"), _median_minutes())
        .outerjoin(Questionnaire, Questionnaire.id == IntakeSession.questionnaire_id)
        .where(*where).group_by(IntakeSession.questionnaire_id, Questionnaire.key)
        .order_by(Questionnaire.key.nulls_last()))).all()
    bucket = func.date_trunc(interval, func.timezone("UTC", IntakeSession.created_at))
    per_period = (await session.execute(
        select(bucket, func.count(), func.count().filter(IntakeSession.status == "submitted"),
               func.count().filter(IntakeSession.status == "cancelled"), _median_minutes())
        .where(*where).group_by(bucket).order_by(bucket))).all()
    await audit.record(session, who, "read", "intake_statistics", None,
                       details={"from": from_date.isoformat(), "to": to_date.isoformat()})
    return {
        "from_date": from_date, "to_date": to_date, "total": total, "by_status": by_status,
        "by_source": by_source, "completion_rate": _rate(by_status["submitted"], total, by_status["cancelled"]),
        "median_minutes_to_submit": round(float(median) / 60, 2) if median is not None else None,
        "by_questionnaire": [
            {"questionnaire_id": str(qid) if qid else None, "key": key, "total": n, "submitted": sub,
             "completion_rate": _rate(sub, n, cancelled),
             "median_minutes_to_submit": round(float(med) / 60, 2) if med is not None else None}
            for qid, key, n, sub, cancelled, med in per_q
        ],
        "interval": interval,
        "by_period": [
            {"period_start": start.date().isoformat(), "total": n, "submitted": sub,
             "completion_rate": _rate(sub, n, cancelled),
             "median_minutes_to_submit": round(float(med) / 60, 2) if med is not None else None}
            for start, n, sub, cancelled, med in per_period
        ],
    }
