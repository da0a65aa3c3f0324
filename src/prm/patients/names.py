"""Name normalisation for matching: case-, accent- and spacing-insensitive. Pure, no I/O."""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]")
# Letters that NFKD does not decompose into base letter + accent.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ł": "l", "ı": "i", "þ": "th"})


def fold(text: str | None) -> str:
    """Lower case, accents and punctuation removed, spaces collapsed: " Núñez-García" → "nunez garcia"."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLD))
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_FOLD)
    plain = _PUNCT.sub(" ", plain).replace("_", " ")
    return _SPACES.sub(" ", plain).strip()


def full_name(given: str | None, family: str | None) -> str:
    """The folded "given family" used for matching."""
    return fold(f"{given or ''} {family or ''}")


def tidy(text: str | None) -> str:
    """A name as stored: surrounding and repeated spaces removed, otherwise as typed."""
    return _SPACES.sub(" ", text or "").strip()
