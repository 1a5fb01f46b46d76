"""search: hostile query text through the real app never becomes a 500 or tsquery syntax."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import MaterialChunk
from shared.embeddings import LocalEmbedder
from tests.factories import make_course, make_material

URL = "https://example.org/it's-a-test?x='1'"
# 160 distinct words, all held by one material: a 1000-character query of them.
MANY_WORDS = [f"q{n:03d}z" for n in range(160)]


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str]) -> dict[str, str]:
    # Many searches by one user here; the rate limit has its own tests.
    return {**function_env, "RATE_LIMIT_SEARCHES_PER_MINUTE": "100000"}


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("search")


def _add_material(session: Session, title: str, content: str) -> uuid.UUID:
    embedder = LocalEmbedder()
    material = make_material(session, course=make_course(session), title=title)
    session.execute(
        insert(MaterialChunk),
        [
            {
                "id": uuid.uuid4(),
                "material_id": material.id,
                "chunk_index": 0,
                "content": content,
                "embedding": embedder.embed_documents([content])[0],
                "embedding_model": embedder.model,
                "page_number": 1,
            }
        ],
    )
    return material.id


@pytest.fixture(scope="module")
def materials(sessions: sessionmaker[Session]) -> dict[str, uuid.UUID]:
    with sessions.begin() as session:
        return {
            "url": _add_material(
                session,
                "Escaping notes",
                f"The worked example lives at {URL} and shows quoting of search input.",
            ),
            "other": _add_material(
                session,
                "Sorting",
                "Quicksort picks a pivot and partitions the array around it recursively.",
            ),
            "many": _add_material(session, "Word list", " ".join(MANY_WORDS)),
            "backslash": _add_material(
                session,
                "Paths",
                r"Windows paths such as C:\Users\ada\notes.txt use backslashes; O'Reilly's book.",
            ),
        }


@pytest.fixture
def headers(user_token: Callable[..., Any]) -> dict[str, str]:
    authorization: dict[str, str] = user_token()[1]
    return authorization


def ask(client: Any, headers: dict[str, str], query: str) -> Any:
    return client.post("/", json={"query": query, "limit": 5}, headers=headers)


def _well_formed(response: Any) -> None:
    """2xx with results, or 4xx in the contract's error JSON; never a 500."""
    assert response.status_code < 500, response.get_data(as_text=True)
    body = response.json
    if response.status_code == 200:
        assert isinstance(body["results"], list)
    else:
        assert 400 <= response.status_code < 500
        assert set(body["error"]) >= {"code", "message"}


def test_a_url_with_apostrophes_finds_the_material_that_holds_it(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    # Before: to_tsquery('simple', "'example.org/it's-a-test?x='1'':*") -> 500.
    response = ask(client, headers, URL)
    assert response.status_code == 200, response.get_data(as_text=True)
    results = response.json["results"]
    assert results[0]["material_id"] == str(materials["url"])
    assert "example.org" in results[0]["snippet"]


def test_a_word_next_to_a_backslash_and_an_apostrophe_is_still_found(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    response = ask(client, headers, r"C:\Users\ada\notes.txt O'Reilly's")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["results"][0]["material_id"] == str(materials["backslash"])


def test_operators_in_the_text_are_words_not_tsquery_syntax(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    # Read as tsquery, "!quicksort" would exclude the very material it names.
    response = ask(client, headers, "!quicksort & !pivot | (partitions):*")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["results"][0]["material_id"] == str(materials["other"])


def test_a_query_of_hundreds_of_matching_words_is_answered(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    # Before: each term nested one level deeper in the SQL expression -> RecursionError, 500.
    query = " ".join(MANY_WORDS)
    assert len(query) <= 1000
    response = ask(client, headers, query)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["results"][0]["material_id"] == str(materials["many"])


@pytest.mark.parametrize(
    "query",
    [
        "it's",
        "'",
        "''''",
        "\\",
        "\\\\'\\",
        "&|!():*<->",
        "a & b | !c <-> (d):* \\ 'e'",
        "example.org/a'|'b https://example.org/x'&'y",
        "https://example.org/it's-a-test?x='1'&y=\\'2\\'",
        "...,;:!?",
        "<-> <2> !! :* :A :ABCD",
        "x" * 1000,
        " ".join(f"w{n}'s" for n in range(200))[:1000],
        "it's-" * 200,
        "Ünïcödé 'quotes' \u2018curly\u2019 \u201cdouble\u201d שלום 'עולם'",
    ],
)
def test_hostile_queries_are_answered_without_a_500(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID], query: str
) -> None:
    response = ask(client, headers, query)
    _well_formed(response)
    assert response.status_code == 200


def test_a_nul_in_the_query_is_422_naming_it(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    response = ask(client, headers, "quick\x00sort")
    _well_formed(response)
    assert response.status_code == 422
    assert "query" in response.json["error"]["fields"]


def test_a_lone_surrogate_in_the_query_is_not_a_500(
    client: Any, headers: dict[str, str], materials: dict[str, uuid.UUID]
) -> None:
    # Sent as the JSON escape, so the server decodes an unpaired surrogate.
    response = client.post(
        "/",
        data='{"query": "quick\\ud800sort"}',
        content_type="application/json",
        headers=headers,
    )
    _well_formed(response)
    assert response.status_code == 422
