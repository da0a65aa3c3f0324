"""The rules of a ticket's life, with no I/O: statuses, SLA, urgent keywords, auto-assignment."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

STATUSES = ("open", "in_progress", "waiting", "resolved", "closed")
OPEN_STATUSES = ("open", "in_progress", "waiting")  # count towards a person's workload; can be overdue
PRIORITIES = ("low", "normal", "high", "urgent")

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "waiting", "resolved", "closed"),
    "in_progress": ("open", "waiting", "resolved", "closed"),
    "waiting": ("open", "in_progress", "resolved", "closed"),
    "resolved": ("open", "closed"),  # a resolved ticket may be reopened
    "closed": (),  # final
}


def allowed_transitions(status: str) -> tuple[str, ...]:
    return TRANSITIONS.get(status, ())


def can_transition(current: str, new: str) -> bool:
    return new in allowed_transitions(current)


@dataclass(frozen=True)
class SlaPolicy:
    """Hours from creation to the due time, per priority."""

    urgent_hours: float = 1
    high_hours: float = 4
    normal_hours: float = 24
    low_hours: float = 72

    def hours(self, priority: str) -> float:
        return float(getattr(self, f"{priority}_hours"))


def due_at(priority: str, created_at: datetime, sla: SlaPolicy) -> datetime:
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    return created_at + timedelta(hours=sla.hours(priority))


def is_overdue(status: str, due: datetime | None, now: datetime) -> bool:
    return status in OPEN_STATUSES and due is not None and due <= now


def _plain(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold().replace("’", "'"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def urgent_keywords_in(text: str, keywords: Iterable[str]) -> list[str]:
    """The configured keywords found in `text` as whole words (case- and accent-insensitive)."""
    plain = _plain(text)
    found = []
    for keyword in keywords:
        key = _plain(keyword.strip())
        if key and re.search(rf"(?<!\w){re.escape(key)}(?!\w)", plain):
            found.append(keyword.strip())
    return found


def effective_priority(requested: str, text: str, keywords: Iterable[str]) -> tuple[str, list[str]]:
    """The priority to store and the urgent keywords that raised it (a keyword never lowers one)."""
    if requested not in PRIORITIES:
        raise ValueError(f"unknown priority {requested!r}")
    matched = urgent_keywords_in(text, keywords)
    return ("urgent" if matched else requested), matched


K = TypeVar("K")


def choose_assignee(
    candidates: Sequence[K], open_counts: Mapping[K, int], last_assigned: K | None
) -> K | None:
    """The eligible person with the fewest open tickets; ties go round-robin.

    Candidates are taken in a stable order (sorted by their string form); among those tied on the
    fewest open tickets, the first one after `last_assigned` in that cyclic order wins, so equal
    workloads rotate instead of always landing on the same person.
    """
    if not candidates:
        return None
    ordered = sorted(set(candidates), key=str)
    fewest = min(open_counts.get(c, 0) for c in ordered)
    start = 0
    if last_assigned is not None and last_assigned in ordered:
        start = ordered.index(last_assigned) + 1
    for i in range(len(ordered)):
        candidate = ordered[(start + i) % len(ordered)]
        if open_counts.get(candidate, 0) == fewest:
            return candidate
    return None  # pragma: no cover - unreachable: some candidate has the minimum
