"""profile: GET/PATCH /me and the XP ledger."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import PointsTransaction, User
from tests.factories import make_major


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


def test_get_me_has_every_contract_field(client: Any, user_token: Callable[..., Any]) -> None:
    user_id, headers = user_token(name="Dana")
    response = client.get("/me", headers=headers)
    assert response.status_code == 200
    user = response.json["user"]
    assert set(user) == {
        "id",
        "email",
        "name",
        "role",
        "total_points",
        "major_id",
        "bio",
        "avatar_url",
        "university",
        "created_at",
    }
    assert user["id"] == str(user_id)
    assert user["name"] == "Dana"
    assert user["total_points"] == 0


def test_patch_me_saves_every_field(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        major_id = make_major(session).id
    user_id, headers = user_token()
    changes = {
        "name": "  Noa Levi  ",
        "bio": "Second-year SE student.",
        "avatar_url": "https://cdn.example.com/a.png",
        "university": "Example University",
        "major_id": str(major_id),
    }
    response = client.patch("/me", json=changes, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["user"]["name"] == "Noa Levi"
    assert response.json["user"]["major_id"] == str(major_id)
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert (user.name, user.bio, user.avatar_url, user.university, user.major_id) == (
            "Noa Levi",
            "Second-year SE student.",
            "https://cdn.example.com/a.png",
            "Example University",
            major_id,
        )
    # null clears optional fields
    response = client.patch("/me", json={"bio": None, "major_id": None}, headers=headers)
    assert response.status_code == 200
    assert response.json["user"]["bio"] is None
    assert response.json["user"]["major_id"] is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"avatar_url": "http://cdn.example.com/a.png"}, "avatar_url"),
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"avatar_url": "https://" + "a" * 2100 + ".com"}, "avatar_url"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": None}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"bio": "x" * 501}, "bio"),
        ({"university": "x" * 201}, "university"),
        ({"major_id": "not-a-uuid"}, "major_id"),
        ({"major_id": str(uuid.uuid4())}, "major_id"),
        ({"role": "ADMIN"}, "role"),
        ({"total_points": 1_000_000}, "total_points"),
    ],
)
def test_patch_me_rejects_bad_values_naming_the_field(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    changes: dict[str, Any],
    field: str,
) -> None:
    user_id, headers = user_token(name="Unchanged")
    response = client.patch("/me", json=changes, headers=headers)
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "validation_failed"
    assert field in response.json["error"]["fields"]
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        assert (user.name, user.role, user.total_points, user.major_id) == (
            "Unchanged",
            "STUDENT",
            0,
            None,
        )


def test_points_ledger_is_paginated_newest_first(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    user_id, headers = user_token()
    for n in range(5):
        # One transaction each, so created_at (transaction time) differs.
        with sessions.begin() as session:
            session.execute(
                insert(PointsTransaction).values(
                    user_id=user_id,
                    amount=n + 1,
                    action="file_completed",
                    reason=f"file {n}",
                    source_id=f"test:{user_id}:{n}",
                )
            )
    seen: list[str] = []
    cursor = None
    for _ in range(3):
        query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = client.get("/me/points", query_string=query, headers=headers)
        assert response.status_code == 200
        seen += [entry["reason"] for entry in response.json["entries"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert seen == ["file 4", "file 3", "file 2", "file 1", "file 0"]
    me = client.get("/me", headers=headers).json["user"]
    assert me["total_points"] == 15


def test_another_users_ledger_is_not_visible(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    owner_id, _ = user_token()
    _, other_headers = user_token()
    with sessions.begin() as session:
        session.execute(
            insert(PointsTransaction).values(
                user_id=owner_id,
                amount=5,
                action="file_completed",
                reason="mine",
                source_id=f"test:{owner_id}",
            )
        )
    response = client.get("/me/points", headers=other_headers)
    assert response.json["entries"] == []


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "101"}, {"cursor": "%%%"}])
def test_points_query_is_validated(
    client: Any, user_token: Callable[..., Any], query: dict[str, str]
) -> None:
    _, headers = user_token()
    response = client.get("/me/points", query_string=query, headers=headers)
    assert response.status_code == 422
    assert set(response.json["error"]["fields"]) == set(query)


def test_points_written_in_one_instant_page_without_repeats(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    user_id, headers = user_token()
    # One transaction: every row has the same created_at; the id breaks the tie.
    with sessions.begin() as session:
        for n in range(7):
            session.execute(
                insert(PointsTransaction).values(
                    user_id=user_id,
                    amount=1,
                    action="file_completed",
                    reason=f"same instant {n}",
                    source_id=f"test:{user_id}:same:{n}",
                )
            )
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = client.get("/me/points", query_string=query, headers=headers)
        seen += [entry["id"] for entry in response.json["entries"]]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
