"""What the read API supports, as data (the CapabilityStatement is generated from it, and the
searches refuse what it does not list), and the parsing of FHIR search values. Pure.

Values: `date` parameters take the prefixes eq, ne, gt, lt, ge, le, sa, eb and a partial or full
date/dateTime (`2026`, `2026-11`, `2026-11-30`, `2026-11-30T09:00:00Z`; no zone = UTC); `token`
parameters take `code`, `system|code`, `|code` or `system|`; `reference` parameters take `Type/id`,
`id` or an absolute URL ending in `Type/id`. A comma separates alternatives (OR); a repeated
parameter must hold for each occurrence (AND).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DEFAULT_COUNT = 20
MAX_COUNT = 100
MAX_OFFSET = 10_000


class SearchError(ValueError):
    """A parameter or value the search cannot honour (→ 400 OperationOutcome naming it)."""

    def __init__(self, param: str, message: str, *, code: str = "invalid") -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # FHIR search param type
    documentation: str


@dataclass(frozen=True)
class ResourceSpec:
    type: str
    interactions: tuple[str, ...]
    params: tuple[Param, ...]
    profile: str | None = None
    documentation: str = ""

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)


_ID = Param("_id", "token", "The resource id (our UUID)")
_LAST_UPDATED = Param("_lastUpdated", "date", "When the record last changed")


def _identifier(system: str) -> Param:
    return Param("identifier", "token", f"An identifier; ours is `{system}|<id>`")


RESOURCES: dict[str, ResourceSpec] = {spec.type: spec for spec in (
    ResourceSpec("Patient", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:patient"),
        Param("name", "string", "Any part of the given or family name (accent- and case-insensitive)"),
        Param("family", "string", "The family name (starts with)"),
        Param("given", "string", "A given name (starts with)"),
        Param("birthdate", "date", "The date of birth"),
        Param("gender", "token", "administrative-gender: male | female | other | unknown"),
        Param("phone", "token", "A phone number in any format (compared as E.164)"),
        Param("email", "token", "An email address (case-insensitive)"),
        Param("telecom", "token", "A phone number or an email address"),
        Param("active", "token", "true: neither merged nor inactive"),
    ), profile="http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient",
        documentation="Merged and deleted patients are excluded from searches; reading a merged one "
                      "returns it inactive with a `replaced-by` link to the survivor."),
    ResourceSpec("Practitioner", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:practitioner"),
        Param("name", "string", "Any part of the name"),
        Param("active", "token", "true | false"),
    )),
    ResourceSpec("Organization", ("read", "search-type"), (
        _ID, _identifier("urn:prm:organisation"), Param("name", "string", "Any part of the name"),
    ), documentation="Only the caller's own organisation."),
    ResourceSpec("Location", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:location"),
        Param("name", "string", "Any part of the name"),
        Param("status", "token", "active | inactive"),
    )),
    ResourceSpec("HealthcareService", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:service"),
        Param("name", "string", "Any part of the name"),
        Param("active", "token", "true | false"),
    )),
    ResourceSpec("Schedule", ("read", "search-type"), (
        _ID, Param("actor", "reference", "Practitioner/<id> or Location/<id>"),
        Param("active", "token", "true | false"),
    ), documentation="One Schedule per practitioner (its id is the practitioner's id)."),
    ResourceSpec("Slot", ("search-type",), (
        Param("service-type", "token", "Required: the HealthcareService, `urn:prm:service|<id>` or `<id>`"),
        Param("schedule", "reference", "Schedule/<practitioner id>"),
        Param("start", "date", "ge/le bounds of the slot start (default: today to 7 days ahead; at most "
                               "31 days)"),
        Param("status", "token", "free (only free slots are published)"),
    ), documentation="Free slots computed from availability; they have no stored identity, so there is "
                     "no read."),
    ResourceSpec("Appointment", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:appointment"),
        Param("patient", "reference", "Patient/<id>"),
        Param("practitioner", "reference", "Practitioner/<id>"),
        Param("location", "reference", "Location/<id>"),
        Param("date", "date", "The appointment start"),
        Param("status", "token", "booked | checked-in | arrived | fulfilled | noshow | cancelled"),
        Param("service-type", "token", "The HealthcareService"),
    )),
    ResourceSpec("Communication", ("read", "search-type"), (
        _ID, _LAST_UPDATED, _identifier("urn:prm:communication"),
        Param("patient", "reference", "Patient/<id>"),
        Param("subject", "reference", "Patient/<id>"),
        Param("status", "token", "preparation | in-progress | completed | not-done | stopped"),
        Param("category", "token", "notification | reminder"),
        Param("sent", "date", "When it was sent (outbound) or received (inbound)"),
    )),
)}
RESULT_PARAMS = ("_count", "_offset", "_format")


def spec(resource_type: str) -> ResourceSpec | None:
    return RESOURCES.get(resource_type)


# --- values --------------------------------------------------------------------------------------

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb")
_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?"
                   r"(Z|[+-]\d{2}:\d{2})?)?)?)?$")


@dataclass(frozen=True)
class DateBound:
    prefix: str
    start: datetime  # inclusive
    end: datetime  # exclusive: the value's precision defines the range it stands for


def parse_date(param: str, raw: str) -> DateBound:
    prefix = raw[:2] if raw[:2] in DATE_PREFIXES else "eq"
    value = raw[2:] if raw[:2] in DATE_PREFIXES else raw
    m = _DATE.match(value)
    if not m:
        raise SearchError(param, f"{raw!r} is not a FHIR date or dateTime (e.g. 2026-11-30 or ge2026-11-30)")
    year, month, day, hour, minute, second, zone = m.groups()
    try:
        if month is None:
            start = datetime(int(year), 1, 1, tzinfo=UTC)
            end = datetime(int(year) + 1, 1, 1, tzinfo=UTC)
        elif day is None:
            start = datetime(int(year), int(month), 1, tzinfo=UTC)
            end = datetime(int(year) + (int(month) == 12), int(month) % 12 + 1, 1, tzinfo=UTC)
        elif hour is None:
            start = datetime(int(year), int(month), int(day), tzinfo=UTC)
            end = start + timedelta(days=1)
        else:
            stamp = f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{zone or '+00:00'}"
            start = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(UTC)
            end = start + timedelta(seconds=1 if second else 60)
    except ValueError:
        raise SearchError(param, f"{raw!r} is not a valid date") from None
    return DateBound(prefix, start, end)


@dataclass(frozen=True)
class TokenValue:
    system: str | None  # None: any system; "": no system
    code: str | None  # None: any code of the system


def parse_token(param: str, raw: str) -> TokenValue:
    if not raw:
        raise SearchError(param, "an empty token")
    if "|" not in raw:
        return TokenValue(None, raw)
    system, _, code = raw.partition("|")
    if not system and not code:
        raise SearchError(param, "'|' alone names nothing")
    return TokenValue(system, code or None)


def parse_reference(param: str, raw: str, *, allowed: tuple[str, ...]) -> tuple[str, uuid.UUID]:
    """(`Type`, id) of `Type/id`, `id` (the first allowed type) or `http(s)://.../Type/id`."""
    parts = raw.rstrip("/").split("/")
    if len(parts) == 1:
        rtype, local = allowed[0], parts[0]
    else:
        rtype, local = parts[-2], parts[-1]
    if rtype not in allowed:
        raise SearchError(param, f"must reference {' or '.join(allowed)}, not {rtype}")
    try:
        return rtype, uuid.UUID(local)
    except ValueError:
        raise SearchError(param, f"{local!r} is not an id of ours (a UUID)", code="not-found") from None


def parse_bool(param: str, raw: str) -> bool:
    if raw in ("true", "false"):
        return raw == "true"
    raise SearchError(param, "must be true or false")


def parse_id(param: str, raw: str) -> uuid.UUID | None:
    """Our ids are UUIDs: any other id can match nothing (None), which is not an error."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def date_only(bound: DateBound) -> tuple[date, date]:
    """The bound's range as dates (for date columns such as birth dates): [start, end)."""
    start = bound.start.date()
    end = bound.end.date() if bound.end.time() == datetime.min.time() else bound.end.date() + timedelta(days=1)
    return start, max(end, start + timedelta(days=1))


@dataclass(frozen=True)
class Query:
    """A parsed search: the parameters in order (`name`, `modifier`, raw values of one occurrence),
    plus paging."""

    params: tuple[tuple[str, str | None, tuple[str, ...]], ...]
    count: int
    offset: int
    ignored: tuple[str, ...] = ()

    def values(self, name: str) -> list[tuple[str | None, tuple[str, ...]]]:
        return [(modifier, values) for n, modifier, values in self.params if n == name]


def parse_query(resource: ResourceSpec, items: list[tuple[str, str]], *, strict: bool) -> Query:
    """Parse the query string of a search. Unknown parameters are an error under `Prefer:
    handling=strict` and ignored (reported in `ignored`) otherwise, as FHIR's lenient handling says."""
    params: list[tuple[str, str | None, tuple[str, ...]]] = []
    ignored: list[str] = []
    count, offset = DEFAULT_COUNT, 0
    for key, raw in items:
        name, _, modifier = key.partition(":")
        if name == "_count":
            count = _int(key, raw, low=0, high=None)
            count = min(count, MAX_COUNT)
            continue
        if name == "_offset":
            offset = _int(key, raw, low=0, high=MAX_OFFSET)
            continue
        if name == "_format":
            if raw not in ("json", "application/fhir+json", "application/json", "application/json+fhir"):
                raise SearchError("_format", "only JSON is supported", code="not-supported")
            continue
        param = resource.param(name)
        if param is None:
            if strict:
                raise SearchError(key, f"{resource.type} has no search parameter {name!r} here",
                                  code="not-supported")
            ignored.append(key)
            continue
        if modifier and not (param.type == "string" and modifier in ("exact", "contains")) and not (
                param.type == "token" and modifier == "not"):
            if strict:
                raise SearchError(key, f"the modifier :{modifier} is not supported", code="not-supported")
            ignored.append(key)
            continue
        values = tuple(v.replace("\\,", ",") for v in re.split(r"(?<!\\),", raw))
        if any(v == "" for v in values):
            raise SearchError(key, "an empty value")
        params.append((name, modifier or None, values))
    return Query(tuple(params), count, offset, tuple(ignored))


def _int(param: str, raw: str, *, low: int, high: int | None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SearchError(param, "must be a whole number") from None
    if value < low or (high is not None and value > high):
        raise SearchError(param, f"must be between {low} and {high}" if high is not None else f"must be ≥ {low}")
    return value
