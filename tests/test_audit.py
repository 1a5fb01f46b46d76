"""GET /moderate/audit: filters and keyset pages over the append-only log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared import audit
from shared.db.models import User


@pytest.fixture(scope="module")
def moderate(function_client: Callable[[str], Any]) -> Any:
    return function_client("moderate")


def _all_pages(moderate: Any, headers: dict[str, str], **query: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {**query, "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = moderate.get("/audit", query_string=params, headers=headers).json
        entries += body["entries"]
        cursor = body["next_cursor"]
        if cursor is None:
            return entries


def test_pages_neither_skip_nor_repeat_rows_sharing_a_timestamp_and_filters_combine(
    moderate: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    admin_id, admin = user_token(role="ADMIN")
    other_id, _ = user_token(role="ADMIN")
    target = uuid.uuid4()
    with sessions.begin() as session:
        actor = session.get(User, admin_id)
        other = session.get(User, other_id)
        # One transaction: every row gets the same now().
        written = [
            audit.record(
                session,
                actor=actor,
                action="change_role",
                target_type="user",
                target_ids=[target if n % 2 else uuid.uuid4()],
            ).id
            for n in range(5)
        ]
        audit.record(
            session, actor=other, action="create_course", target_type="course", target_ids=[target]
        )
        audit.record(
            session,
            actor=None,
            actor_name="cli: lectern admin grant",
            action="grant_admin",
            target_type="user",
            target_ids=[target],
        )
    mine = _all_pages(moderate, admin, actor_id=str(admin_id))
    assert sorted(entry["id"] for entry in mine) == sorted(str(w) for w in written)
    assert len({entry["id"] for entry in mine}) == 5
    on_target = _all_pages(moderate, admin, target_id=str(target))
    assert {entry["action"] for entry in on_target} == {
        "change_role",
        "create_course",
        "grant_admin",
    }
    assert len(on_target) == 4
    both = _all_pages(moderate, admin, target_id=str(target), action="change_role")
    assert len(both) == 2
    cli = [entry for entry in on_target if entry["action"] == "grant_admin"]
    assert cli[0]["actor_id"] is None
    assert cli[0]["actor_name"] == "cli: lectern admin grant"


def test_bad_filters_are_422(moderate: Any, user_token: Callable[..., Any]) -> None:
    _, admin = user_token(role="ADMIN")
    for query in ({"action": "DROP TABLE"}, {"actor_id": "x"}, {"cursor": "nope"}):
        response = moderate.get("/audit", query_string=query, headers=admin)
        assert response.status_code == 422, query
        assert set(response.json["error"]["fields"]) == set(query)
