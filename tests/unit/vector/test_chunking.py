"""Chunking rules: windows of messages, speaker turns, paragraphs with overlap. Pure."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from prm.vector.chunking import (
    Message,
    chunk_document,
    chunk_messages,
    chunk_text,
    chunk_transcript,
    speaker_turns,
    split_long,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def msg(i: int, minutes: float, text: str, conv: str = "c1", speaker: str = "Patient") -> Message:
    return Message(id=f"m{i}", conversation_id=conv, at=T0 + timedelta(minutes=minutes), text=text, speaker=speaker)


def test_messages_close_in_time_share_a_chunk_with_their_ids() -> None:
    chunks = chunk_messages([msg(1, 0, "My knee hurts"), msg(2, 1, "Since when?", speaker="Clinic"),
                             msg(3, 2, "Since the new medication")])
    assert len(chunks) == 1
    [c] = chunks
    assert c.text == "Patient: My knee hurts\nClinic: Since when?\nPatient: Since the new medication"
    assert c.message_ids == ("m1", "m2", "m3")
    assert c.occurred_at == T0 and c.ended_at == T0 + timedelta(minutes=2)
    assert c.citation() == {"message_ids": ["m1", "m2", "m3"]}


def test_long_gap_starts_a_new_chunk() -> None:
    chunks = chunk_messages([msg(1, 0, "Hello"), msg(2, 5, "Anyone?"), msg(3, 5 + 31, "Back again")],
                            gap=timedelta(minutes=30))
    assert [c.message_ids for c in chunks] == [("m1", "m2"), ("m3",)]
    assert [c.ordinal for c in chunks] == [0, 1]


def test_never_across_conversations() -> None:
    chunks = chunk_messages([msg(1, 0, "a in one", conv="c1"), msg(2, 1, "b in two", conv="c2"),
                             msg(3, 2, "c in one", conv="c1")])
    assert {c.conversation_id: c.message_ids for c in chunks} == {"c1": ("m1", "m3"), "c2": ("m2",)}


def test_window_limited_by_size_and_long_message_split_keeps_its_id() -> None:
    long = "This is a sentence about insurance. " * 20
    chunks = chunk_messages([msg(1, 0, "short one"), msg(2, 1, long)], max_chars=200)
    assert all(len(c.text) <= 200 for c in chunks)
    assert chunks[0].message_ids[0] == "m1"
    assert all("m2" in c.message_ids for c in chunks[1:])
    assert len(chunks) > 2


def test_blank_messages_are_skipped() -> None:
    assert chunk_messages([msg(1, 0, "   "), msg(2, 1, "")]) == []


def test_transcript_by_speaker_turns() -> None:
    transcript = "Agent: Good morning, clinic.\nCaller: Hi, my insurance changed\nlast week.\nAgent: Noted."
    assert speaker_turns(transcript) == [("Agent", "Good morning, clinic."),
                                         ("Caller", "Hi, my insurance changed last week."), ("Agent", "Noted.")]
    [c] = chunk_transcript(transcript, max_chars=500, at=T0)
    assert c.turns == (0, 2) and c.occurred_at == T0
    small = chunk_transcript(transcript, max_chars=45)
    assert [c.turns for c in small] == [(0, 0), (1, 1), (2, 2)]


def test_unlabelled_transcript_is_cut_like_a_document() -> None:
    chunks = chunk_transcript("just some words\n\nand a second paragraph", max_chars=25)
    assert [c.text for c in chunks] == ["just some words", "and a second paragraph"]


def test_document_paragraphs_overlap() -> None:
    doc = "\n\n".join(f"Paragraph {i} " + "word " * 10 for i in range(6))
    chunks = chunk_document(doc, max_chars=150)
    assert len(chunks) >= 3
    for before, after in itertools.pairwise(chunks):
        assert before.paragraphs is not None and after.paragraphs is not None
        assert after.paragraphs[0] == before.paragraphs[1]  # the last paragraph is repeated
    assert chunks[-1].paragraphs is not None and chunks[-1].paragraphs[1] == 5
    no_overlap = chunk_document(doc, max_chars=150, overlap=False)
    assert sum(len(c.text) for c in no_overlap) < sum(len(c.text) for c in chunks)


def test_chunk_text_splits_at_sentences() -> None:
    chunks = chunk_text("One two three. Four five six. Seven eight nine.", max_chars=30)
    assert [c.text for c in chunks] == ["One two three. Four five six.", "Seven eight nine."]


@given(st.text(min_size=0, max_size=2000), st.integers(min_value=20, max_value=400))
def test_split_long_never_exceeds_and_keeps_every_word(text: str, max_chars: int) -> None:
    pieces = split_long(text, max_chars)
    assert all(0 < len(p) <= max_chars for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())
