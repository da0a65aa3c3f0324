"""Shared field rules: visible names, identifier systems (pure)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from prm.core.fields import IdentifierSystem, Name, OptionalName, has_visible_character, is_uri

INVISIBLE = [
    "\u200b",  # zero-width space
    "\u200b\u200c\u200d\u2060",  # zero-width space, non-joiner, joiner, word joiner
    "\ufeff",  # byte order mark
    "\u0301\u0308",  # combining acute + diaeresis, nothing to sit on
    "\u20dd",  # combining enclosing circle (Me)
    "\u200e\u200f",  # left-to-right / right-to-left marks
    " \u00a0\u3000",  # spaces
    "\u200b \u0301",
    "\ue000",  # private use
]
VISIBLE = ["Ana", "José", "Nuñez", "O'Brien", "李", "Ng\u0303", "e\u0301", "\u200bAna", "X Æ A-12", "3"]


class _M(BaseModel):
    name: Name = Field(min_length=1, max_length=200)
    optional: OptionalName = ""
    system: IdentifierSystem = "mrn"


@pytest.mark.parametrize("text", INVISIBLE)
def test_invisible_only_names_are_refused(text: str) -> None:
    assert not has_visible_character(text)
    with pytest.raises(ValidationError) as info:
        _M(name=text)
    assert info.value.errors()[0]["loc"] == ("name",)
    with pytest.raises(ValidationError):
        _M(name="Ana", optional=text)


@pytest.mark.parametrize("text", VISIBLE)
def test_names_with_something_visible_pass(text: str) -> None:
    assert _M(name=text, optional=text).name == text
    assert _M(name="Ana", optional="").optional == ""


@pytest.mark.parametrize("system", ["mrn", "MRN-2", "nhs.uk", "urn:oid:2.16.840.1.113883.4.1",
                                    "https://hospital.example/mrn", "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
                                    "http://example.org/a%20b", "urn:ietf:rfc:3986"])
def test_identifier_systems_that_fhir_accepts(system: str) -> None:
    assert _M(name="A", system=system).system == system


@pytest.mark.parametrize("system", ["urn:my system", "my system", "urn:tab\there", "urn:x\u00a0y", "urn:ñ",
                                    "http://exa mple.org", "1abc:foo", ":nothing", "urn:", "bad%zz:x",
                                    "urn:bad%zz", "-mrn", "mrn\u200b"])
def test_identifier_systems_that_fhir_forbids(system: str) -> None:
    with pytest.raises(ValidationError) as info:
        _M(name="A", system=system)
    assert info.value.errors()[0]["loc"] == ("system",)


def test_is_uri() -> None:
    assert is_uri("urn:prm:identifier:mrn") and not is_uri("urn:prm:identifier:my mrn")
