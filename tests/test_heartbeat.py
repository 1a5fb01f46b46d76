"""heartbeat: reading time measured against a controllable clock, XP once."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import Course, FileViewingSession, PointsTransaction, User
from tests.clocks import FakeClock
from tests.factories import make_course, make_material
from tests.parallel import run_together


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("heartbeat")


def new_course(sessions: sessionmaker[Session], pages: list[int]) -> tuple[Course, list[uuid.UUID]]:
    with sessions.begin() as session:
        course = make_course(session)
        ids = [make_material(session, course=course, page_count=p).id for p in pages]
    return course, ids


def start(client: Any, headers: dict[str, str], file_id: uuid.UUID) -> dict[str, Any]:
    response = client.post("/sessions", json={"file_id": str(file_id)}, headers=headers)
    assert response.status_code == 201, response.json
    return dict(response.json["session"])


def beat(client: Any, headers: dict[str, str], session_id: str, seconds: Any) -> Any:
    return client.post(
        f"/sessions/{session_id}/beat", json={"active_seconds": seconds}, headers=headers
    )


def points(sessions: sessionmaker[Session], user_id: uuid.UUID) -> tuple[int, int]:
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        total = session.scalar(
            select(func.coalesce(func.sum(PointsTransaction.amount), 0)).where(
                PointsTransaction.user_id == user_id
            )
        )
        return user.total_points, int(total or 0)


def test_a_one_page_file_needs_27_seconds_of_wall_clock_time(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    _, (file_id,) = new_course(sessions, [1])
    viewing = start(client, headers, file_id)
    assert viewing["required_active_seconds"] == 27
    assert (viewing["active_seconds"], viewing["is_complete"]) == (0, False)

    # Claims run ahead of the clock: credit follows the wall clock, not the claim.
    fake_clock.advance(10)
    body = beat(client, headers, viewing["id"], 25).json
    assert (body["session"]["active_seconds"], body["credited_seconds"]) == (10, 10)
    fake_clock.advance(16)
    body = beat(client, headers, viewing["id"], 30).json
    assert body["session"]["active_seconds"] == 26
    assert body["session"]["is_complete"] is False
    assert body["awarded"] == []
    assert body["session"]["completion_score"] == pytest.approx(26 / 27)

    fake_clock.advance(1)
    body = beat(client, headers, viewing["id"], 1).json
    assert body["session"]["active_seconds"] == 27
    assert body["session"]["is_complete"] is True
    assert body["session"]["completion_score"] == 1
    assert [a["action"] for a in body["awarded"]] == ["file_completed", "course_complete"]
    assert body["course"] == {
        "course_id": body["session"]["course_id"],
        "status": "completed",
        "files_completed": 1,
        "total_files": 1,
    }
    assert body["celebration"]["xp"] == 100
    assert body["celebration"]["quote"]["text"]
    assert body["celebration"]["quote"]["author"]
    assert points(sessions, user_id) == (110, 110)

    # Later beats keep it complete and award nothing more.
    fake_clock.advance(30)
    body = beat(client, headers, viewing["id"], 30).json
    assert body["session"]["is_complete"] is True
    assert (body["awarded"], body["celebration"]) == ([], None)


def test_a_1000_second_beat_is_not_credited_in_full(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    _, (file_id,) = new_course(sessions, [100])
    viewing = start(client, headers, file_id)
    fake_clock.advance(1000)
    body = beat(client, headers, viewing["id"], 1000).json
    assert body["credited_seconds"] == 30
    assert body["session"]["active_seconds"] == 30


@pytest.mark.parametrize("claim", [0, -5, 1.5, "10", True, None, 3601, 10**12])
def test_implausible_claims_are_422(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session], claim: Any
) -> None:
    _, headers = user_token()
    _, (file_id,) = new_course(sessions, [1])
    viewing = start(client, headers, file_id)
    response = beat(client, headers, viewing["id"], claim)
    assert response.status_code == 422
    assert "active_seconds" in response.json["error"]["fields"]
    with sessions.begin() as session:
        row = session.get(FileViewingSession, uuid.UUID(viewing["id"]))
        assert row is not None
        assert row.active_seconds == 0


def test_sessions_are_private_and_only_on_published_files(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, owner = user_token()
    _, stranger = user_token()
    _, (file_id,) = new_course(sessions, [1])
    viewing = start(client, owner, file_id)
    fake_clock.advance(10)
    assert beat(client, stranger, viewing["id"], 10).status_code == 404
    assert beat(client, owner, str(uuid.uuid4()), 10).status_code == 404
    assert beat(client, owner, "not-a-uuid", 10).status_code == 404
    missing = client.post("/sessions", json={"file_id": str(uuid.uuid4())}, headers=owner)
    assert missing.status_code == 404
    with sessions.begin() as session:
        row = session.get(FileViewingSession, uuid.UUID(viewing["id"]))
        assert row is not None
        assert row.active_seconds == 0


def test_twenty_parallel_beats_credit_consistently_and_award_once(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    _, (file_id, _other) = new_course(sessions, [1, 1])
    viewing = start(client, headers, file_id)
    fake_clock.advance(600)
    clients = [client.application.test_client() for _ in range(20)]
    bodies = run_together(
        [partial(lambda own: beat(own, headers, viewing["id"], 30).json, own) for own in clients]
    )
    credited = [body["credited_seconds"] for body in bodies]
    awards = [body["awarded"] for body in bodies]
    with sessions.begin() as session:
        row = session.get(FileViewingSession, uuid.UUID(viewing["id"]))
        assert row is not None
        assert row.active_seconds == sum(credited)
        assert row.active_seconds <= 600
        assert row.is_complete
    assert sum(len(a) for a in awards) == 1
    assert points(sessions, user_id) == (10, 10)


def test_rereading_a_completed_file_awards_nothing(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    _, (first, second) = new_course(sessions, [1, 1])
    for _ in range(2):
        viewing = start(client, headers, first)
        fake_clock.advance(30)
        body = beat(client, headers, viewing["id"], 30).json
        assert body["session"]["is_complete"] is True
    assert body["awarded"] == []
    assert body["course"]["files_completed"] == 1
    assert body["course"]["status"] == "engaged"
    assert points(sessions, user_id) == (10, 10)

    viewing = start(client, headers, second)
    fake_clock.advance(30)
    body = beat(client, headers, viewing["id"], 30).json
    assert [a["action"] for a in body["awarded"]] == ["file_completed", "course_complete"]
    assert body["celebration"] is not None
    assert points(sessions, user_id) == (120, 120)


def test_course_status_follows_the_thresholds(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    _, files = new_course(sessions, [1, 1, 1])
    statuses = []
    for file_id in files:
        viewing = start(client, headers, file_id)
        fake_clock.advance(1)
        statuses.append(beat(client, headers, viewing["id"], 1).json["course"]["status"])
        fake_clock.advance(30)
        statuses.append(beat(client, headers, viewing["id"], 30).json["course"]["status"])
    assert statuses == [
        "not_started",
        "exploring",
        "exploring",
        "engaged",
        "engaged",
        "completed",
    ]


def test_a_steady_state_beat_is_one_sql_statement(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
    function_env: dict[str, str],
) -> None:
    from shared.config import load_settings
    from shared.db.engine import get_engine

    _, headers = user_token()
    _, (file_id,) = new_course(sessions, [50])
    viewing = start(client, headers, file_id)
    fake_clock.advance(10)
    assert beat(client, headers, viewing["id"], 10).status_code == 200  # warm the pool

    statements: list[str] = []
    engine = get_engine(load_settings())

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        fake_clock.advance(10)
        response = beat(client, headers, viewing["id"], 10)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert response.status_code == 200
    assert response.json["credited_seconds"] == 10
    assert len(statements) == 1, statements
    assert statements[0].lstrip().startswith("WITH current AS")


def test_recent_files_most_recent_first(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    _, (first, second) = new_course(sessions, [1, 1])
    start(client, headers, first)
    fake_clock.advance(5)
    start(client, headers, second)
    fake_clock.advance(5)
    start(client, headers, first)
    files = client.get("/recent", headers=headers).json["files"]
    assert [f["file_id"] for f in files] == [str(first), str(second)]
    assert files[0]["viewed_at"] == "2026-03-01T09:00:10Z"
    _, stranger = user_token()
    assert client.get("/recent", headers=stranger).json["files"] == []
