"""tasks: the study plan, validated field by field and private to its owner."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared.db.models import UserTask


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("tasks")


def valid(**changes: Any) -> dict[str, Any]:
    body = {
        "title": "Revise lecture 4",
        "date": "2026-05-04",
        "start_hour": 9.5,
        "duration": 1.5,
        "priority": "high",
    }
    body.update(changes)
    return body


def test_create_list_update_delete(client: Any, user_token: Callable[..., Any]) -> None:
    _, headers = user_token()
    created = [
        client.post("/", json=valid(date=day, start_hour=hour, title=title), headers=headers)
        for day, hour, title in [
            ("2026-05-05", 8, "second day"),
            ("2026-05-04", 14.5, "first day, afternoon"),
            ("2026-05-04", 9, "first day, morning"),
            ("2026-06-01", 9, "outside the range"),
        ]
    ]
    assert all(response.status_code == 201 for response in created)
    task = created[0].json["task"]
    assert (task["date"], task["start_hour"], task["completed"]) == ("2026-05-05", 8, False)

    listed = client.get(
        "/", query_string={"from": "2026-05-04", "to": "2026-05-05"}, headers=headers
    ).json["tasks"]
    assert [t["title"] for t in listed] == [
        "first day, morning",
        "first day, afternoon",
        "second day",
    ]

    patched = client.patch(
        f"/{task['id']}", json={"completed": True, "priority": "urgent"}, headers=headers
    )
    assert patched.status_code == 200
    assert (patched.json["task"]["completed"], patched.json["task"]["priority"]) == (True, "urgent")
    assert client.delete(f"/{task['id']}", headers=headers).status_code == 204
    assert client.delete(f"/{task['id']}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"date": "2026-02-30"}, "date"),
        ({"date": "2026-5-4"}, "date"),
        ({"date": 20260504}, "date"),
        ({"date": "tomorrow"}, "date"),
        ({"start_hour": -0.5}, "start_hour"),
        ({"start_hour": 24}, "start_hour"),
        ({"start_hour": 9.25}, "start_hour"),
        ({"start_hour": "9"}, "start_hour"),
        ({"duration": 0}, "duration"),
        ({"duration": -1}, "duration"),
        ({"start_hour": 23, "duration": 1.5}, "duration"),
        ({"priority": "whenever"}, "priority"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "two\nlines"}, "title"),
        ({"owner": "someone"}, "owner"),
    ],
)
def test_bad_fields_are_422_naming_the_field(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    changes: dict[str, Any],
    field: str,
) -> None:
    user_id, headers = user_token()
    response = client.post("/", json=valid(**changes), headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    with sessions.begin() as session:
        count = session.scalar(select(func.count()).where(UserTask.user_id == user_id))
    assert count == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"start_hour": 23.5}, "start_hour"),  # 23.5 + the task's 1.5 hours
        ({"duration": 15}, "duration"),
        ({"completed": "yes"}, "completed"),
        ({"title": None}, "title"),
        ({"date": "2026-13-01"}, "date"),
    ],
)
def test_patch_is_validated_against_the_whole_task(
    client: Any, user_token: Callable[..., Any], changes: dict[str, Any], field: str
) -> None:
    _, headers = user_token()
    task = client.post("/", json=valid(), headers=headers).json["task"]
    response = client.patch(f"/{task['id']}", json=changes, headers=headers)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    unchanged = client.get(
        "/", query_string={"from": "2026-05-04", "to": "2026-05-04"}, headers=headers
    ).json["tasks"]
    assert unchanged == [task]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"from": "2026-05-10", "to": "2026-05-01"}, "to"),
        ({"from": "2026-01-01", "to": "2027-01-02"}, "to"),
        ({"from": "2026-02-29"}, "from"),
        ({"to": "yesterday"}, "to"),
    ],
)
def test_list_range_is_validated(
    client: Any, user_token: Callable[..., Any], query: dict[str, str], field: str
) -> None:
    _, headers = user_token()
    response = client.get("/", query_string=query, headers=headers)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_users_cannot_touch_each_others_tasks(client: Any, user_token: Callable[..., Any]) -> None:
    _, owner = user_token()
    _, stranger = user_token()
    task = client.post("/", json=valid(), headers=owner).json["task"]
    assert (
        client.patch(f"/{task['id']}", json={"completed": True}, headers=stranger).status_code
        == 404
    )
    assert client.delete(f"/{task['id']}", headers=stranger).status_code == 404
    assert (
        client.get(
            "/", query_string={"from": "2026-05-04", "to": "2026-05-04"}, headers=stranger
        ).json["tasks"]
        == []
    )
    mine = client.get(
        "/", query_string={"from": "2026-05-04", "to": "2026-05-04"}, headers=owner
    ).json["tasks"]
    assert mine == [task]
    assert (
        client.patch(f"/{uuid.uuid4()}", json={"completed": True}, headers=owner).status_code == 404
    )


def test_listing_uses_the_user_date_index(engine: Any) -> None:
    from sqlalchemy import text

    with engine.begin() as connection:
        connection.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            row[0]
            for row in connection.execute(
                text(
                    "EXPLAIN SELECT * FROM user_tasks WHERE user_id = :u "
                    "AND date BETWEEN '2026-01-01' AND '2026-01-07' ORDER BY date, start_hour"
                ),
                {"u": uuid.uuid4()},
            )
        )
    assert "ix_user_tasks_user_date" in plan


def test_without_a_range_the_list_is_the_callers_week_in_their_time_zone(
    client: Any, user_token: Callable[..., Any]
) -> None:
    from datetime import UTC, datetime

    from shared import clock
    from tests.clocks import FakeClock

    _, headers = user_token()
    for day in ("2026-03-01", "2026-03-02", "2026-03-08", "2026-03-09"):
        body = {"title": day, "date": day, "start_hour": 9, "duration": 1, "priority": "normal"}
        assert client.post("/", json=body, headers=headers).status_code == 201
    fake = FakeClock()
    # Sunday 1 March 2026, 20:00 UTC: still Sunday in UTC, already Monday 2 March in Auckland.
    fake.moment = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    previous = clock.use(fake)
    try:
        utc = client.get("/", headers=headers).json["tasks"]
        auckland = client.get("/", query_string={"tz": "Pacific/Auckland"}, headers=headers)
    finally:
        clock.use(previous)
    assert [task["date"] for task in utc] == ["2026-03-01"]  # the week of Mon 23 Feb
    assert [task["date"] for task in auckland.json["tasks"]] == ["2026-03-02", "2026-03-08"]
    bad = client.get("/", query_string={"tz": "Mars/Olympus"}, headers=headers)
    assert "tz" in bad.json["error"]["fields"]
