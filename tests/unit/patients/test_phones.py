from __future__ import annotations

import pytest

from prm.patients.phones import InvalidPhoneNumber, is_region, normalise, try_normalise


@pytest.mark.parametrize("raw, region, expected", [
    ("+34 612 34 56 78", "US", "+34612345678"),
    ("0034 612-34-56-78", "US", "+34612345678"),
    ("612 34 56 78", "ES", "+34612345678"),
    ("(415) 555-0132", "US", "+14155550132"),
    ("415.555.0132", "us", "+14155550132"),
    ("whatsapp:+34612345678", "US", "+34612345678"),
    ("tel:+44 20 7946 0958", "US", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
])
def test_normalise_accepts_common_formats(raw, region, expected):
    assert normalise(raw, region) == expected


@pytest.mark.parametrize("raw", ["", "   ", "abc", "12", "+34 12", "+1 555 000 0000000000", "+999 123456",
                                 "1" * 50])
def test_normalise_rejects_impossible_numbers(raw):
    with pytest.raises(InvalidPhoneNumber):
        normalise(raw, "US")
    assert try_normalise(raw, "US") is None


def test_national_number_depends_on_region():
    assert normalise("612345678", "ES") == "+34612345678"
    with pytest.raises(InvalidPhoneNumber):
        normalise("612345678", "US")


def test_is_region():
    assert is_region("es") and is_region("US") and not is_region("XX")
