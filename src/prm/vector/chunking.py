"""Cutting what was said and written into chunks worth one vector each. Pure: no I/O.

* Conversation messages: windows of consecutive messages of one conversation, a new window at a
  gap longer than `gap` or when the window would pass `max_chars`; a window never spans two
  conversations, and each chunk keeps the ids of its messages (for citations).
* Voice transcripts: by speaker turns (`Caller: ...`, `Agent: ...`), consecutive turns packed up
  to `max_chars`; a transcript without speaker labels is cut like a document.
* Documents: by paragraphs packed up to `max_chars`, each chunk starting with the last paragraph
  of the one before (overlap), so a passage split across two chunks is still found whole.

A single message, turn or paragraph longer than `max_chars` is cut at sentence ends (or, failing
that, at word boundaries) into pieces that each cite the same message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SPEAKER_LABELS = {"inbound": "Patient", "outbound": "Clinic"}
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")
_TURN = re.compile(r"^\s*(?P<speaker>[A-Za-z][\w .'-]{0,30}?)\s*:\s+(?P<text>\S.*)$")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Message:
    id: str
    conversation_id: str
    at: datetime
    text: str
    speaker: str  # shown before the text: "Patient", "Clinic", ...


@dataclass(frozen=True)
class Chunk:
    text: str
    ordinal: int
    occurred_at: datetime | None = None
    ended_at: datetime | None = None
    conversation_id: str | None = None
    message_ids: tuple[str, ...] = ()
    turns: tuple[int, int] | None = None  # first and last speaker turn (transcripts)
    paragraphs: tuple[int, int] | None = None  # first and last paragraph (documents)
    extra: dict[str, object] = field(default_factory=dict)

    def citation(self) -> dict[str, object]:
        """What the chunk points back to, stored with it and returned with each hit."""
        out: dict[str, object] = {}
        if self.message_ids:
            out["message_ids"] = list(self.message_ids)
        if self.turns is not None:
            out["turns"] = list(self.turns)
        if self.paragraphs is not None:
            out["paragraphs"] = list(self.paragraphs)
        return out


def clean(text: str) -> str:
    """Collapse runs of spaces and tabs; keep line breaks; strip the ends."""
    return "\n".join(re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.strip().splitlines()).strip()


def split_long(text: str, max_chars: int) -> list[str]:
    """`text` in pieces of at most `max_chars`, cut at sentence ends where possible, else at words."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(text):
        for part in _by_words(sentence, max_chars):
            candidate = f"{current} {part}".strip()
            if len(candidate) <= max_chars:
                current = candidate
            else:
                if current:
                    pieces.append(current)
                current = part
    if current:
        pieces.append(current)
    return pieces


def _by_words(text: str, max_chars: int) -> list[str]:
    if len(text) <= max_chars:
        return [text]
    out: list[str] = []
    current = ""
    for word in text.split():
        while len(word) > max_chars:  # a "word" longer than a chunk (a URL, a base64 blob)
            if current:
                out.append(current)
                current = ""
            out.append(word[:max_chars])
            word = word[max_chars:]
        candidate = f"{current} {word}".strip()
        if len(candidate) <= max_chars:
            current = candidate
        else:
            out.append(current)
            current = word
    if current:
        out.append(current)
    return out


def chunk_text(text: str, max_chars: int = 1200) -> list[Chunk]:
    """Plain text cut at sentence ends into chunks of at most `max_chars`."""
    return [Chunk(text=piece, ordinal=i) for i, piece in enumerate(split_long(clean(text), max_chars))]


def chunk_messages(messages: Iterable[Message], *, gap: timedelta = timedelta(minutes=30),
                   max_chars: int = 1200) -> list[Chunk]:
    """Windows of consecutive messages (see the module docstring); ordinals count from 0 overall."""
    ordered = sorted((m for m in messages if m.text and m.text.strip()), key=lambda m: (m.conversation_id, m.at, m.id))
    chunks: list[Chunk] = []
    lines: list[str] = []
    ids: list[str] = []
    first: Message | None = None
    last: Message | None = None

    def close() -> None:
        nonlocal lines, ids, first
        if lines and first is not None and last is not None:
            chunks.append(Chunk(text="\n".join(lines), ordinal=len(chunks), occurred_at=first.at, ended_at=last.at,
                                conversation_id=first.conversation_id, message_ids=tuple(dict.fromkeys(ids))))
        lines, ids, first = [], [], None

    for message in ordered:
        if last is not None and (message.conversation_id != last.conversation_id or message.at - last.at > gap):
            close()
        body = clean(message.text)
        prefix = f"{message.speaker}: "
        for piece in split_long(body, max(1, max_chars - len(prefix))):
            line = prefix + piece
            if lines and len("\n".join([*lines, line])) > max_chars:
                close()
            if first is None:
                first = message
            lines.append(line)
            ids.append(message.id)
            last = message
        last = message
    close()
    return chunks


def speaker_turns(transcript: str) -> list[tuple[str, str]]:
    """(speaker, text) per turn; lines without a label continue the previous turn. Empty if unlabelled."""
    turns: list[tuple[str, str]] = []
    for raw in transcript.splitlines():
        line = raw.strip()
        if not line:
            continue
        match = _TURN.match(line)
        if match:
            turns.append((match["speaker"].strip(), match["text"].strip()))
        elif turns:
            speaker, text = turns[-1]
            turns[-1] = (speaker, f"{text} {line}")
        else:
            return []  # text before any label: not a labelled transcript
    return turns


def chunk_transcript(transcript: str, *, max_chars: int = 1200, at: datetime | None = None) -> list[Chunk]:
    """A call transcript by speaker turns, packed up to `max_chars` (unlabelled: as a document)."""
    turns = speaker_turns(transcript)
    if not turns:
        return [Chunk(text=c.text, ordinal=c.ordinal, occurred_at=at, paragraphs=c.paragraphs)
                for c in chunk_document(transcript, max_chars=max_chars)]
    chunks: list[Chunk] = []
    lines: list[tuple[int, str]] = []  # (turn index, line)

    def close() -> None:
        if lines:
            chunks.append(Chunk(text="\n".join(line for _, line in lines), ordinal=len(chunks), occurred_at=at,
                                turns=(lines[0][0], lines[-1][0])))
        lines.clear()

    for index, (speaker, text) in enumerate(turns):
        prefix = f"{speaker}: "
        for piece in split_long(clean(text), max(1, max_chars - len(prefix))):
            line = prefix + piece
            if lines and len("\n".join([*(x for _, x in lines), line])) > max_chars:
                close()
            lines.append((index, line))
    close()
    return chunks


def paragraphs(text: str) -> list[str]:
    return [clean(p) for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip()]


def chunk_document(text: str, *, max_chars: int = 1200, overlap: bool = True) -> list[Chunk]:
    """Paragraphs packed up to `max_chars`; each chunk starts with the previous chunk's last paragraph."""
    parts: list[tuple[int, str]] = []
    for index, paragraph in enumerate(paragraphs(text)):
        parts.extend((index, piece) for piece in split_long(paragraph, max_chars))
    chunks: list[Chunk] = []
    current: list[tuple[int, str]] = []
    fresh = 0  # paragraphs in `current` not already in the previous chunk

    def close() -> None:
        if current and fresh:
            chunks.append(Chunk(text="\n\n".join(p for _, p in current), ordinal=len(chunks),
                                paragraphs=(current[0][0], current[-1][0])))

    for part in parts:
        if current and len("\n\n".join(p for _, p in [*current, part])) > max_chars:
            close()
            tail = current[-1]
            current = [tail] if overlap and len(tail[1]) + 2 + len(part[1]) <= max_chars and tail != part else []
            fresh = 0
        current.append(part)
        fresh += 1
    close()
    return chunks
