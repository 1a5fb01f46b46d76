"""The contract's HTTP conventions, through a real function app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import User

ALLOWED_ORIGIN = "https://app.lectern.test"


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


def test_preflight_for_an_allowed_origin(client: Any) -> None:
    response = client.options(
        "/me",
        headers={
            "Origin": ALLOWED_ORIGIN,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert "PATCH" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]


def test_preflight_for_another_origin_grants_nothing(client: Any) -> None:
    response = client.options(
        "/me", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_headers_on_errors_too(client: Any) -> None:
    response = client.get("/me", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED_ORIGIN
    assert response.headers["Access-Control-Expose-Headers"] == "Retry-After, X-Request-Id"


def test_wrong_method_is_405_with_allow(client: Any) -> None:
    response = client.delete("/me")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"GET", "PATCH", "OPTIONS"}


def test_unknown_route_is_404_in_the_contract_format(client: Any) -> None:
    response = client.get("/nothing/here")
    assert response.status_code == 404
    request_id = response.headers["X-Request-Id"]
    assert response.json == {
        "error": {
            "code": "not_found",
            "message": "no route for /nothing/here",
            "request_id": request_id,
        }
    }


def test_malformed_json_is_400(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    response = client.patch(
        "/me", data="{not json", headers=headers, content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "malformed_json"


def test_wrong_media_type_is_415(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    response = client.patch("/me", data="name=x", headers=headers, content_type="text/plain")
    assert response.status_code == 415


def test_a_huge_body_is_413(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    body = '{"bio": "' + "x" * (2 * 1024 * 1024) + '"}'
    response = client.patch("/me", data=body, headers=headers, content_type="application/json")
    assert response.status_code == 413


def test_a_broken_database_is_a_500_that_leaks_nothing(
    function_client: Callable[[str], Any],
    function_env: dict[str, str],
    user_token: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.db.engine import dispose_engine

    _, headers = user_token()
    broken = function_env["DATABASE_URL"].replace("/test_", "/missing_database_")
    monkeypatch.setenv("DATABASE_URL", broken)
    dispose_engine()
    try:
        response = function_client("profile").get("/me", headers=headers)
    finally:
        monkeypatch.setenv("DATABASE_URL", function_env["DATABASE_URL"])
        dispose_engine()
    # A database that does not exist is a configuration bug, not an outage.
    assert response.status_code == 500
    request_id = response.headers["X-Request-Id"]
    assert response.json == {
        "error": {"code": "internal_error", "message": "internal error", "request_id": request_id}
    }


def test_failed_validation_leaves_the_row_as_it_was(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    user_id, headers = user_token(bio="before")
    response = client.patch(
        "/me", json={"bio": "after", "avatar_url": "ftp://example.com/a.png"}, headers=headers
    )
    assert response.status_code == 422
    assert set(response.json["error"]["fields"]) == {"avatar_url"}
    with sessions.begin() as session:
        assert session.scalar(select(User.bio).where(User.id == user_id)) == "before"


def test_the_token_is_checked_before_the_body(client: Any) -> None:
    response = client.patch("/me", data="{not json", content_type="application/json")
    assert response.status_code == 401
    response = client.patch("/me", json={"avatar_url": "ftp://x"})
    assert response.status_code == 401


def test_a_huge_body_without_a_length_is_413(client: Any, user_token: Callable[..., Any]) -> None:
    import io

    from werkzeug.test import EnvironBuilder

    _, headers = user_token()
    body = b'{"bio": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    builder = EnvironBuilder(
        path="/me", method="PATCH", headers=headers, content_type="application/json"
    )
    environ = builder.get_environ()
    # As a chunked request arrives: no Content-Length, the stream ends on its own.
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.input_terminated"] = True
    response = client.open(environ)
    builder.close()
    assert response.status_code == 413
