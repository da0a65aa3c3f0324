"""Speech to text behind one small Protocol.

* `OpenAISpeech`: OpenAI's `/audio/transcriptions` (multipart upload; `whisper-1` answers
  `verbose_json` with timed segments, the `gpt-4o-*-transcribe` models plain `json`).
* `OfflineSpeech` (the default): no model, no network, deterministic. A UTF-8 text upload
  (`text/plain`, e.g. a transcript typed during development) is returned as the transcript; a WAV
  file gets its duration read from the header and an empty text. Anything else is refused, so a
  missing provider never looks like a recording with nothing said.
"""

from __future__ import annotations

import io
import threading
import wave
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from prm.adapters.openai_api import AINotConfigured, AIProviderError, OpenAIClient

MAX_AUDIO_BYTES = 25 * 1024 * 1024  # OpenAI's upload limit


@dataclass(frozen=True)
class Segment:
    start_seconds: float
    end_seconds: float
    text: str


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str | None = None
    duration_seconds: float | None = None
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    model: str = ""


@runtime_checkable
class SpeechToText(Protocol):
    model: str

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str,
                         language: str | None = None) -> Transcript: ...


class UnsupportedAudio(AIProviderError):
    """The audio cannot be transcribed (too large, or a format the provider does not take)."""


def _check_size(audio: bytes) -> None:
    if not audio:
        raise UnsupportedAudio("the audio is empty", code="empty_audio")
    if len(audio) > MAX_AUDIO_BYTES:
        raise UnsupportedAudio(f"the audio is larger than {MAX_AUDIO_BYTES} bytes", code="audio_too_large")


class OpenAISpeech:
    def __init__(self, client: OpenAIClient, model: str = "whisper-1") -> None:
        self.client = client
        self.model = model

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str,
                         language: str | None = None) -> Transcript:
        _check_size(audio)
        verbose = self.model.startswith("whisper")
        data: dict[str, Any] = {"model": self.model, "response_format": "verbose_json" if verbose else "json"}
        if language:
            data["language"] = language
        answer = await self.client.post("audio/transcriptions", data=data,
                                        files={"file": (filename, audio, content_type)})
        try:
            segments = tuple(
                Segment(float(s["start"]), float(s["end"]), str(s["text"]).strip())
                for s in (answer.get("segments") or [])
            )
            duration = answer.get("duration")
            return Transcript(text=str(answer["text"]).strip(), language=answer.get("language") or language,
                              duration_seconds=float(duration) if duration is not None else None,
                              segments=segments, model=self.model)
        except (KeyError, TypeError, ValueError):
            raise AIProviderError("OpenAI transcription answer has an unexpected shape",
                                  code="invalid_response") from None


class OfflineSpeech:
    model = "offline"

    async def transcribe(self, audio: bytes, *, filename: str, content_type: str,
                         language: str | None = None) -> Transcript:
        _check_size(audio)
        kind = content_type.split(";")[0].strip().lower()
        if kind == "text/plain":
            try:
                text = audio.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise UnsupportedAudio("text/plain upload is not UTF-8", code="unsupported_audio") from None
            return Transcript(text=text, language=language, model=self.model)
        if kind in ("audio/wav", "audio/x-wav", "audio/wave"):
            try:
                with wave.open(io.BytesIO(audio)) as w:
                    duration = w.getnframes() / float(w.getframerate() or 1)
            except (wave.Error, EOFError):
                raise UnsupportedAudio("not a readable WAV file", code="unsupported_audio") from None
            return Transcript(text="", language=language, duration_seconds=duration, model=self.model)
        raise UnsupportedAudio(f"the offline speech provider cannot transcribe {kind}; set SPEECH_PROVIDER=openai",
                               code="unsupported_audio")


_cache: dict[tuple[Any, ...], SpeechToText] = {}
_cache_lock = threading.Lock()


def from_settings(settings: Any) -> SpeechToText:
    """The speech-to-text provider the settings choose (`SPEECH_PROVIDER`: offline | openai)."""
    from prm.adapters.embeddings import openai_config

    provider = settings.speech_provider
    key: tuple[Any, ...] = (provider, settings.speech_model, settings.openai_base_url,
                            settings.openai_api_key.get_secret_value() if settings.openai_api_key else "")
    with _cache_lock:
        if key not in _cache:
            if provider == "offline":
                _cache[key] = OfflineSpeech()
            elif provider == "openai":
                _cache[key] = OpenAISpeech(OpenAIClient(openai_config(settings)), settings.speech_model)
            else:  # pragma: no cover - settings validate the choice
                raise AINotConfigured(f"unknown SPEECH_PROVIDER {provider!r}")
        return _cache[key]
