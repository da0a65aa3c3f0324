"""Duplicate scoring: how likely two patient records describe the same person. Pure, no I/O.

The score is a sum of weighted signals, capped to [0, 1]:

| signal                                          | weight                    | reason code           |
| ----------------------------------------------- | ------------------------- | --------------------- |
| name similarity s (rapidfuzz, folded names)     | 0.5 × s, only if s ≥ 0.6  | name_exact/similar    |
| same date of birth                              | +0.3                      | birth_date_exact      |
| birth date with day/month or 2 digits swapped   | +0.2                      | birth_date_transposed |
| both birth dates known and otherwise different  | −0.2                      | (none: a penalty)     |
| a phone number in common (E.164)                | +0.25                     | same_phone            |
| an email address in common (any case)           | +0.25                     | same_email            |

Name similarity is the best of rapidfuzz's `token_sort_ratio` (word order does not matter:
"García José" = "José García") and `token_set_ratio` scaled by 0.95 (one name contained in the
other: "José García" ~ "José Luis García"), on accent- and case-folded names.

With the default threshold of 0.7 (setting `PATIENT_DUPLICATE_THRESHOLD`), the same name with the
same birth date (0.8), the same name with a shared phone or email (0.75), a near-identical name with
a transposed birth date and a shared phone (≥ 0.9) are flagged; a shared family phone alone
(0.25 + a low name score) or the same name alone (0.5) are not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from rapidfuzz import fuzz

from prm.patients import names

NAME_WEIGHT = 0.5
NAME_FLOOR = 0.6
BIRTH_DATE_EXACT = 0.3
BIRTH_DATE_TRANSPOSED = 0.2
BIRTH_DATE_CONFLICT = -0.2
SAME_PHONE = 0.25
SAME_EMAIL = 0.25
DEFAULT_THRESHOLD = 0.7


@dataclass(frozen=True)
class Facts:
    """What the scorer compares: names, birth date, E.164 phones and emails."""

    given_name: str = ""
    family_name: str = ""
    birth_date: date | None = None
    phones: frozenset[str] = field(default_factory=frozenset)
    emails: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def of(cls, given_name: str | None, family_name: str | None, birth_date: date | None,
           phones: Iterable[str] = (), emails: Iterable[str] = ()) -> Facts:
        return cls(given_name or "", family_name or "", birth_date, frozenset(p for p in phones if p),
                   frozenset(e.strip().lower() for e in emails if e))


@dataclass(frozen=True)
class Reason:
    code: str
    weight: float
    detail: str


@dataclass(frozen=True)
class Match:
    score: float
    reasons: tuple[Reason, ...]

    def is_likely(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        return self.score >= threshold


def name_similarity(a: Facts, b: Facts) -> float:
    """0..1: how alike the two full names are, ignoring case, accents and word order."""
    left = names.full_name(a.given_name, a.family_name)
    right = names.full_name(b.given_name, b.family_name)
    if not left or not right:
        return 0.0
    ordered = fuzz.token_sort_ratio(left, right) / 100
    contained = fuzz.token_set_ratio(left, right) / 100 * 0.95
    return round(max(ordered, contained), 4)


def transposed(a: date, b: date) -> bool:
    """True when `b` is `a` with day and month swapped, or with two adjacent digits swapped."""
    if a == b:
        return False
    if a.year == b.year and a.month == b.day and a.day == b.month:
        return True
    left, right = a.strftime("%Y%m%d"), b.strftime("%Y%m%d")
    diffs = [i for i in range(len(left)) if left[i] != right[i]]
    return (len(diffs) == 2 and diffs[1] == diffs[0] + 1
            and left[diffs[0]] == right[diffs[1]] and left[diffs[1]] == right[diffs[0]])


def transpositions(d: date) -> list[date]:
    """Every valid date that `transposed(d, x)` accepts (for querying candidates)."""
    found: set[date] = set()
    try:
        found.add(date(d.year, d.day, d.month))
    except ValueError:
        pass
    digits = d.strftime("%Y%m%d")
    for i in range(len(digits) - 1):
        if digits[i] == digits[i + 1]:
            continue
        swapped = digits[:i] + digits[i + 1] + digits[i] + digits[i + 2:]
        try:
            found.add(date(int(swapped[:4]), int(swapped[4:6]), int(swapped[6:])))
        except ValueError:
            continue
    found.discard(d)
    return sorted(found)


def score(a: Facts, b: Facts) -> Match:
    """Score how likely `a` and `b` are the same person, with the reasons that contributed."""
    reasons: list[Reason] = []
    total = 0.0

    similarity = name_similarity(a, b)
    if similarity >= NAME_FLOOR:
        weight = round(NAME_WEIGHT * similarity, 4)
        code = "name_exact" if similarity >= 0.999 else "name_similar"
        reasons.append(Reason(code, weight, f"name similarity {similarity:.2f}"))
        total += weight

    if a.birth_date is not None and b.birth_date is not None:
        if a.birth_date == b.birth_date:
            reasons.append(Reason("birth_date_exact", BIRTH_DATE_EXACT, "same date of birth"))
            total += BIRTH_DATE_EXACT
        elif transposed(a.birth_date, b.birth_date):
            reasons.append(Reason("birth_date_transposed", BIRTH_DATE_TRANSPOSED,
                                  "date of birth with swapped day/month or digits"))
            total += BIRTH_DATE_TRANSPOSED
        else:
            total += BIRTH_DATE_CONFLICT

    shared_phones = a.phones & b.phones
    if shared_phones:
        reasons.append(Reason("same_phone", SAME_PHONE, f"{len(shared_phones)} phone number(s) in common"))
        total += SAME_PHONE
    shared_emails = a.emails & b.emails
    if shared_emails:
        reasons.append(Reason("same_email", SAME_EMAIL, f"{len(shared_emails)} email address(es) in common"))
        total += SAME_EMAIL

    return Match(score=round(min(1.0, max(0.0, total)), 4), reasons=tuple(reasons))
