"""search with the gemini provider: the real google-genai client against a loopback stub."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings
from shared.embeddings import GeminiEmbedder
from tests.factories import make_course, make_material
from tests.gemini_stub import GeminiStub
from tests.search_corpus import corpus_materials

API_KEY = "test-key"


@pytest.fixture(scope="module")
def stub() -> Iterator[GeminiStub]:
    with GeminiStub(api_key=API_KEY) as stub:
        yield stub


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str], stub: GeminiStub) -> dict[str, str]:
    return {
        **function_env,
        "EMBEDDINGS_PROVIDER": "gemini",
        "GEMINI_API_KEY": API_KEY,
        "GEMINI_BASE_URL": stub.url,
    }


@pytest.fixture(scope="module")
def client(
    function_client: Callable[[str], Any], sessions: sessionmaker[Session], stub: GeminiStub
) -> Any:
    embedder = GeminiEmbedder(
        Settings(EMBEDDINGS_PROVIDER="gemini", GEMINI_API_KEY=API_KEY, GEMINI_BASE_URL=stub.url)
    )
    try:
        with sessions.begin() as session:
            corpus_materials(session, embedder, make_material, make_course)
    finally:
        embedder.close()
    return function_client("search")


@pytest.fixture
def headers(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token()[1]


def test_the_query_is_embedded_for_retrieval_and_compared_with_gemini_chunks(
    client: Any, headers: dict[str, str], stub: GeminiStub
) -> None:
    stub.reset()
    response = client.post("/", json={"query": "chloroplast light reactions"}, headers=headers)
    assert response.status_code == 200
    results = response.json["results"]
    assert results
    assert results[0]["title"] == "Photosynthesis"
    (request,) = stub.embed_requests
    (item,) = request.body["requests"]
    assert item["taskType"] == "RETRIEVAL_QUERY"
    assert item["outputDimensionality"] == 1536


def test_generative_answers_cite_only_returned_results(
    client: Any, headers: dict[str, str], stub: GeminiStub
) -> None:
    stub.reset()
    stub.answer = "Light reactions split water and make ATP [1]. Also see [9]."
    body = client.post(
        "/", json={"query": "chloroplast light reactions", "answer": True}, headers=headers
    ).json
    answer = body["answer"]
    assert answer["kind"] == "generative"
    assert answer["text"] == "Light reactions split water and make ATP [1]. Also see [9]."
    first = body["results"][0]
    assert answer["citations"] == [
        {"material_id": first["material_id"], "page_number": first["page_number"]}
    ]
    (request,) = stub.generate_requests
    prompt = str(request.body["contents"])
    assert "[1] " + first["title"] in prompt
    assert "only the numbered sources" in str(request.body["systemInstruction"])


def test_a_failed_answer_still_returns_the_results(
    client: Any, headers: dict[str, str], stub: GeminiStub
) -> None:
    stub.reset()
    stub.fail_next(status=400, rpc="generateContent", message="model not available")
    response = client.post(
        "/", json={"query": "chloroplast light reactions", "answer": True}, headers=headers
    )
    assert response.status_code == 200
    assert response.json["answer"] is None
    assert response.json["results"]
