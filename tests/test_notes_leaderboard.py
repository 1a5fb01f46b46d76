"""profile: sticky notes on published files, and the leaderboard."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import PointsTransaction
from tests.factories import make_major, make_material, make_user


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


def stored(*notes: dict[str, Any]) -> list[dict[str, Any]]:
    """Notes as they are read back: as written (no null for an optional never set)."""
    return list(notes)


@pytest.fixture
def file_id(sessions: sessionmaker[Session]) -> uuid.UUID:
    with sessions.begin() as session:
        return make_material(session, page_count=5).id


def test_notes_round_trip_last_write_wins(
    client: Any, user_token: Callable[..., Any], file_id: uuid.UUID
) -> None:
    _, headers = user_token()
    empty = client.get(f"/me/notes/{file_id}", headers=headers).json
    assert empty == {"notes": [], "updated_at": None}
    first = [{"id": "a1", "text": "Check the proof on page 3", "page": 3, "color": "yellow"}]
    saved = client.put(f"/me/notes/{file_id}", json={"notes": first}, headers=headers)
    assert saved.status_code == 200
    assert saved.json["notes"] == stored(*first)
    assert saved.json["updated_at"].endswith("Z")
    second = [{"id": "b2", "text": "Replaced\r\nwith two lines\tand a tab", "color": "#ff00aa"}]
    client.put(f"/me/notes/{file_id}", json={"notes": second}, headers=headers)
    read = client.get(f"/me/notes/{file_id}", headers=headers).json
    assert read["notes"] == stored(*second)
    # What was read can be sent back as it is (nulls included).
    again = client.put(f"/me/notes/{file_id}", json={"notes": read["notes"]}, headers=headers)
    assert again.status_code == 200
    assert again.json["notes"] == read["notes"]


def test_notes_are_private(client: Any, user_token: Callable[..., Any], file_id: uuid.UUID) -> None:
    _, owner = user_token()
    _, stranger = user_token()
    client.put(f"/me/notes/{file_id}", json={"notes": [{"id": "x", "text": "mine"}]}, headers=owner)
    assert client.get(f"/me/notes/{file_id}", headers=stranger).json["notes"] == []
    assert client.get(f"/me/notes/{file_id}", headers=owner).json["notes"] == stored(
        {"id": "x", "text": "mine"}
    )


def test_notes_only_on_published_files(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    missing = uuid.uuid4()
    assert client.get(f"/me/notes/{missing}", headers=headers).status_code == 404
    response = client.put(f"/me/notes/{missing}", json={"notes": []}, headers=headers)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("notes", "field"),
    [
        ([{"id": str(n), "text": "n"} for n in range(101)], "notes"),
        ([{"id": "a", "text": "x" * 2001}], "notes.0.text"),
        ([{"id": "a", "text": "ok"}, {"id": "a", "text": "again"}], "notes"),
        ([{"id": "", "text": "ok"}], "notes.0.id"),
        ([{"id": "a/b", "text": "ok"}], "notes.0.id"),
        ([{"id": "a", "text": "ok", "page": 0}], "notes.0.page"),
        ([{"id": "a", "text": "ok", "page": 6}], "notes.0.page"),
        ([{"id": "a", "text": "ok", "color": "url(javascript:x)"}], "notes.0.color"),
        ([{"id": "a", "text": "ok", "html": "<b>"}], "notes.0.html"),
    ],
)
def test_bad_notes_are_422_and_nothing_changes(
    client: Any,
    user_token: Callable[..., Any],
    file_id: uuid.UUID,
    notes: list[dict[str, Any]],
    field: str,
) -> None:
    _, headers = user_token()
    kept = [{"id": "keep", "text": "kept"}]
    client.put(f"/me/notes/{file_id}", json={"notes": kept}, headers=headers)
    response = client.put(f"/me/notes/{file_id}", json={"notes": notes}, headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    assert client.get(f"/me/notes/{file_id}", headers=headers).json["notes"] == stored(*kept)


def _give(sessions: sessionmaker[Session], user_id: uuid.UUID, amount: int) -> None:
    with sessions.begin() as session:
        session.execute(
            insert(PointsTransaction).values(
                user_id=user_id,
                amount=amount,
                action="file_completed",
                reason="test",
                source_id=f"test:{uuid.uuid4()}",
            )
        )


def test_leaderboard_ties_share_a_rank_ordered_by_who_got_there_first(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        major = make_major(session)
        users = {
            name: make_user(session, name=name, major_id=major.id).id
            for name in ("ana", "ben", "cai", "dov", "eli")
        }
    me_id, me_headers = user_token(name="me", major_id=major.id)
    # Order of arrival matters inside a tie: cai reaches 50 before ben.
    _give(sessions, users["ana"], 90)
    _give(sessions, users["cai"], 50)
    _give(sessions, users["ben"], 30)
    _give(sessions, users["ben"], 20)
    _give(sessions, users["dov"], 10)
    _give(sessions, me_id, 5)
    board = client.get(
        "/leaderboard", query_string={"major_id": str(major.id), "limit": "4"}, headers=me_headers
    ).json
    assert [(e["rank"], e["name"], e["total_points"]) for e in board["entries"]] == [
        (1, "ana", 90),
        (2, "cai", 50),
        (2, "ben", 50),
        (4, "dov", 10),
    ]
    # The caller is outside the page and still learns their rank.
    assert board["me"] == {"rank": 5, "total_points": 5}


def test_leaderboard_query_is_validated(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    for query in ({"limit": "0"}, {"limit": "101"}, {"major_id": "x"}):
        response = client.get("/leaderboard", query_string=query, headers=headers)
        assert response.status_code == 422


def test_leaderboard_pages_with_cursors_across_a_tie(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        major = make_major(session)
        users = {
            name: make_user(session, name=name, major_id=major.id).id
            for name in ("ana", "ben", "cai", "dov", "eli", "fay")
        }
    _, me_headers = user_token(name="me", major_id=major.id)
    for name, points in (("ana", 90), ("cai", 50), ("ben", 50), ("eli", 50), ("dov", 10)):
        _give(sessions, users[name], points)
    _give(sessions, users["fay"], 5)
    seen: list[tuple[int, str]] = []
    cursor = None
    for _ in range(5):
        query = {"major_id": str(major.id), "limit": "2", **({"cursor": cursor} if cursor else {})}
        response = client.get("/leaderboard", query_string=query, headers=me_headers)
        assert response.status_code == 200
        seen += [(e["rank"], e["name"]) for e in response.json["entries"]]
        assert response.json["me"] == {"rank": 7, "total_points": 0}
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    # Page boundaries fall inside the 50-point tie: nobody repeats or goes missing.
    assert seen == [
        (1, "ana"),
        (2, "cai"),
        (2, "ben"),
        (2, "eli"),
        (5, "dov"),
        (6, "fay"),
        (7, "me"),
    ]


def test_a_bad_leaderboard_cursor_is_422_naming_it(
    client: Any, user_token: Callable[..., Any], file_id: uuid.UUID
) -> None:
    _, headers = user_token()
    # Another list's cursor is not this one's.
    client.put(f"/me/notes/{file_id}", json={"notes": [{"id": "a", "text": "a"}]}, headers=headers)
    client.put(f"/me/notes/{file_id}", json={"notes": [{"id": "a", "text": "a"}]}, headers=headers)
    for cursor in ("%%%", "W10", "x" * 300, "WyIxIiwgIjIiXQ"):
        response = client.get("/leaderboard", query_string={"cursor": cursor}, headers=headers)
        assert response.status_code == 422, cursor
        assert list(response.json["error"]["fields"]) == ["cursor"]


def test_notes_list_names_the_published_files_with_notes_newest_first(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    from sqlalchemy import update

    from shared.db.models import Material

    _, headers = user_token()
    with sessions.begin() as session:
        files = [make_material(session, page_count=3, title=f"Notes {n}").id for n in range(4)]
    for count, file in zip((1, 2, 3, 0), files, strict=True):
        notes = [{"id": f"n{n}", "text": "t"} for n in range(count)]
        saved = client.put(f"/me/notes/{file}", json={"notes": notes}, headers=headers)
        assert saved.status_code == 200
    with sessions.begin() as session:
        # A hidden file's notes are kept, but not listed.
        session.execute(update(Material).where(Material.id == files[0]).values(is_published=False))
    listed: list[dict[str, Any]] = []
    cursor = None
    for _ in range(3):
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        response = client.get("/me/notes", query_string=query, headers=headers)
        assert response.status_code == 200
        listed += response.json["files"]
        cursor = response.json["next_cursor"]
        if cursor is None:
            break
    assert [(f["file_id"], f["title"], f["count"]) for f in listed] == [
        (str(files[2]), "Notes 2", 3),
        (str(files[1]), "Notes 1", 2),
    ]
    assert all(f["updated_at"].endswith("Z") for f in listed)
    _, stranger = user_token()
    assert client.get("/me/notes", headers=stranger).json == {"files": [], "next_cursor": None}
    bad = client.get("/me/notes", query_string={"cursor": "nope"}, headers=headers)
    assert bad.status_code == 422
    assert "cursor" in bad.json["error"]["fields"]
