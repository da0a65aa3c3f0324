from __future__ import annotations

from prm.patients.names import fold, full_name, tidy


def test_fold_removes_case_accents_punctuation_and_extra_spaces():
    assert fold("  Núñez-García ") == "nunez garcia"
    assert fold("MÜLLER") == "muller"
    assert fold("Straße") == "strasse"
    assert fold("Søren Ærø") == "soren aero"
    assert fold("O'Brien") == "o brien"
    assert fold("François\tDupont") == "francois dupont"
    assert fold(None) == "" and fold("") == ""


def test_full_name_and_tidy():
    assert full_name("José", "Núñez") == "jose nunez"
    assert full_name(None, "Smith") == "smith"
    assert tidy("  Ana   María  ") == "Ana María"
    assert tidy(None) == ""
