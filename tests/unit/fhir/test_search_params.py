"""FHIR search values: dates with prefixes and precision, tokens, references, paging limits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from prm.fhir import search_params as sp


def test_dates_stand_for_their_precision() -> None:
    b = sp.parse_date("date", "2026-03")
    assert (b.prefix, b.start, b.end) == ("eq", datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
    b = sp.parse_date("date", "ge2026-12")
    assert b.prefix == "ge" and b.end == datetime(2027, 1, 1, tzinfo=UTC)
    b = sp.parse_date("date", "lt2026-03-24T10:00:00+01:00")
    assert b.start == datetime(2026, 3, 24, 9, 0, tzinfo=UTC)
    assert sp.date_only(sp.parse_date("birthdate", "1985")) == (date(1985, 1, 1), date(1986, 1, 1))
    for bad in ("yesterday", "2026-13-01", "2026-02-30", "ab2026"):
        with pytest.raises(sp.SearchError):
            sp.parse_date("date", bad)


def test_tokens_and_references() -> None:
    assert sp.parse_token("identifier", "urn:x|42") == sp.TokenValue("urn:x", "42")
    assert sp.parse_token("identifier", "|42") == sp.TokenValue("", "42")
    assert sp.parse_token("identifier", "urn:x|") == sp.TokenValue("urn:x", None)
    pid = uuid.uuid4()
    for raw in (f"Patient/{pid}", str(pid), f"https://prm.test/fhir/R4/Patient/{pid}"):
        assert sp.parse_reference("patient", raw, allowed=("Patient",)) == ("Patient", pid)
    with pytest.raises(sp.SearchError):
        sp.parse_reference("patient", f"Practitioner/{pid}", allowed=("Patient",))


def test_query_parsing_lenient_and_strict() -> None:
    spec = sp.RESOURCES["Patient"]
    q = sp.parse_query(spec, [("name", "ana,eva"), ("name", "g"), ("_count", "500"), ("foo", "1")], strict=False)
    assert q.values("name") == [(None, ("ana", "eva")), (None, ("g",))]
    assert q.count == sp.MAX_COUNT and q.ignored == ("foo",)
    with pytest.raises(sp.SearchError):
        sp.parse_query(spec, [("foo", "1")], strict=True)
    with pytest.raises(sp.SearchError):
        sp.parse_query(spec, [("_count", "-1")], strict=False)
    with pytest.raises(sp.SearchError):
        sp.parse_query(spec, [("_offset", str(sp.MAX_OFFSET + 1))], strict=False)
