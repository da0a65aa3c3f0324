from __future__ import annotations

from datetime import date

from prm.patients.duplicates import (
    DEFAULT_THRESHOLD,
    Facts,
    name_similarity,
    score,
    transposed,
    transpositions,
)

JOSE = Facts.of("José", "Núñez García", date(1984, 3, 7), ["+34612345678"], ["Jose@Example.org"])


def codes(match):
    return {r.code for r in match.reasons}


def test_same_name_and_birth_date_is_a_likely_duplicate():
    m = score(JOSE, Facts.of("Jose", "Nunez Garcia", date(1984, 3, 7)))
    assert codes(m) == {"name_exact", "birth_date_exact"}
    assert m.score == 0.8 and m.is_likely(DEFAULT_THRESHOLD)


def test_word_order_and_accents_do_not_matter():
    assert name_similarity(JOSE, Facts.of("Núñez García", "José", None)) == 1.0


def test_transposed_birth_date_and_shared_contact_points():
    m = score(JOSE, Facts.of("José", "Nunez", date(1984, 7, 3), ["+34612345678"], ["jose@example.org"]))
    assert codes(m) == {"name_similar", "birth_date_transposed", "same_phone", "same_email"}
    assert m.score == 1.0  # capped


def test_family_phone_alone_is_not_a_duplicate():
    sibling = Facts.of("Lucía", "Núñez García", date(2012, 5, 1), ["+34612345678"])
    m = score(JOSE, sibling)
    assert "same_phone" in codes(m) and "birth_date_exact" not in codes(m)
    assert not m.is_likely()


def test_same_name_alone_is_not_enough():
    m = score(JOSE, Facts.of("José", "Núñez García", None))
    assert m.score == 0.5 and not m.is_likely()


def test_conflicting_birth_date_lowers_the_score():
    with_conflict = score(JOSE, Facts.of("José", "Núñez García", date(1950, 1, 1), ["+34612345678"]))
    without = score(JOSE, Facts.of("José", "Núñez García", None, ["+34612345678"]))
    assert with_conflict.score == round(without.score - 0.2, 4)


def test_different_people_score_low():
    m = score(JOSE, Facts.of("Mary", "Smith", date(1990, 1, 1), ["+14155550100"]))
    assert m.score == 0.0 and m.reasons == ()


def test_empty_names_are_not_similar():
    assert name_similarity(Facts(), JOSE) == 0.0


def test_transposed():
    assert transposed(date(1984, 3, 7), date(1984, 7, 3))  # day/month swapped
    assert transposed(date(1984, 3, 7), date(1948, 3, 7))  # adjacent digits swapped
    assert not transposed(date(1984, 3, 17), date(1984, 3, 17))  # the same date is exact, not transposed
    assert not transposed(date(1984, 3, 7), date(1984, 3, 8))
    assert not transposed(date(1984, 3, 7), date(1999, 3, 7))


def test_transpositions_lists_valid_dates_only():
    found = transpositions(date(1984, 3, 7))
    assert date(1984, 7, 3) in found and date(1948, 3, 7) in found
    assert date(1984, 3, 7) not in found
    assert all(transposed(date(1984, 3, 7), d) for d in found)
    assert transpositions(date(2000, 1, 31)) == sorted(transpositions(date(2000, 1, 31)))
