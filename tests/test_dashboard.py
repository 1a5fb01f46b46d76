"""GET /profile/me/dashboard: the home screen in one read, in a fixed number of statements."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.dashboard import COURSES, RECENT
from shared.db.models import PointsTransaction, ReadingProgress, UserRecentFile, UserTask
from tests.clocks import FakeClock
from tests.factories import make_course, make_material, make_user

# 2026-03-01 09:00 UTC is already 2026-03-01 23:00 in Kiritimati (UTC+14);
# three hours later it is the 2nd there and still the 1st in UTC.
KIRITIMATI = "Pacific/Kiritimati"


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


@pytest.fixture(scope="module")
def profile(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


@pytest.fixture(scope="module")
def heartbeat(function_client: Callable[[str], Any]) -> Any:
    return function_client("heartbeat")


def add_task(sessions: sessionmaker[Session], user_id: uuid.UUID, day: date, hour: float) -> str:
    with sessions.begin() as session:
        task = UserTask(
            user_id=user_id, title=f"Task at {hour}", date=day, start_hour=hour, duration=1.0
        )
        session.add(task)
        session.flush()
        return str(task.id)


def test_the_dashboard_has_the_user_rank_courses_recent_and_today(
    profile: Any,
    heartbeat: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token(name="Dana")
    with sessions.begin() as session:
        reading = make_course(session)
        reading_files = [make_material(session, course=reading, page_count=1).id for _ in range(3)]
        finished = make_course(session)
        finished_file = make_material(session, course=finished, page_count=1).id
        make_course(session)  # never opened: not on the dashboard
        reading_id, finished_id = reading.id, finished.id

    fake_clock.advance(1)
    session_id = heartbeat.post(
        "/sessions", json={"file_id": str(finished_file)}, headers=headers
    ).json["session"]["id"]
    fake_clock.advance(30)
    heartbeat.post(f"/sessions/{session_id}/beat", json={"active_seconds": 30}, headers=headers)
    for file_id in reading_files[:2]:
        fake_clock.advance(5)
        session_id = heartbeat.post(
            "/sessions", json={"file_id": str(file_id)}, headers=headers
        ).json["session"]["id"]
        fake_clock.advance(30)
        heartbeat.post(f"/sessions/{session_id}/beat", json={"active_seconds": 30}, headers=headers)
    fake_clock.advance(3 * 3600)  # 12:01 UTC on the 1st; the 2nd in Kiritimati
    utc_task = add_task(sessions, user_id, date(2026, 3, 1), 14)
    early = add_task(sessions, user_id, date(2026, 3, 2), 8)
    late = add_task(sessions, user_id, date(2026, 3, 2), 7.5)

    response = profile.get("/me/dashboard", headers=headers)
    assert response.status_code == 200
    body = response.json
    assert body["user"]["id"] == str(user_id)
    assert body["user"]["name"] == "Dana"
    assert body["user"]["total_points"] == 130  # three files and one course
    assert body["rank"]["total_points"] == 130
    assert body["rank"]["rank"] >= 1
    # The completed course is done, the untouched one not started: only one is in progress.
    assert body["courses"] == [
        {
            "course_id": str(reading_id),
            "status": "engaged",
            "files_completed": 2,
            "total_files": 3,
        }
    ]
    assert str(finished_id) not in {c["course_id"] for c in body["courses"]}
    assert [f["file_id"] for f in body["recent"]] == [
        str(reading_files[1]),
        str(reading_files[0]),
        str(finished_file),
    ]
    assert body["recent"][0]["completion_score"] == 1.0
    assert (body["date"], [t["id"] for t in body["today"]]) == ("2026-03-01", [utc_task])

    local = profile.get("/me/dashboard", query_string={"tz": KIRITIMATI}, headers=headers).json
    assert local["date"] == "2026-03-02"
    assert [t["id"] for t in local["today"]] == [late, early]

    # Another user's dashboard shows none of it.
    _, stranger = user_token()
    theirs = profile.get("/me/dashboard", headers=stranger).json
    assert (theirs["courses"], theirs["recent"], theirs["today"]) == ([], [], [])
    assert theirs["user"]["total_points"] == 0


@pytest.mark.parametrize(
    "tz", ["Mars/Olympus", "../../etc/passwd", "", "Europe/Berlin\x00", "x" * 100]
)
def test_an_unknown_time_zone_is_422_naming_tz(
    profile: Any, user_token: Callable[..., Any], tz: str
) -> None:
    _, headers = user_token()
    response = profile.get("/me/dashboard", query_string={"tz": tz}, headers=headers)
    assert response.status_code == 422
    assert list(response.json["error"]["fields"]) == ["tz"]


def _long_history(sessions: sessionmaker[Session], user_id: uuid.UUID) -> None:
    """Every kind of row the dashboard reads, many times over its page sizes."""
    today = date(2026, 3, 1)
    with sessions.begin() as session:
        for course_number in range(COURSES + 10):
            course = make_course(session)
            for file_number in range(4):
                material = make_material(session, course=course, page_count=2)
                session.add(
                    ReadingProgress(
                        user_id=user_id,
                        file_id=material.id,
                        active_seconds=10 * file_number,
                        is_complete=file_number == 0 and course_number % 2 == 0,
                    )
                )
                session.add(UserRecentFile(user_id=user_id, file_id=material.id))
        for n in range(300):
            session.add(
                PointsTransaction(
                    user_id=user_id,
                    amount=1,
                    action="file_completed",
                    reason="history",
                    source_id=f"history:{user_id}:{n}",
                )
            )
        for n in range(200):
            session.add(
                UserTask(
                    user_id=user_id,
                    title=f"Task {n}",
                    date=today + timedelta(days=n % 20 - 10),
                    start_hour=(n % 47) / 2,
                    duration=0.5,
                )
            )
        for _ in range(50):
            make_user(session, total_points=0)


def test_the_dashboard_costs_the_same_statements_whatever_the_history(
    profile: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    function_env: dict[str, str],
    fake_clock: FakeClock,
) -> None:
    from shared.config import load_settings
    from shared.db.engine import get_engine

    _, newcomer = user_token()
    veteran_id, veteran = user_token()
    _long_history(sessions, veteran_id)

    engine = get_engine(load_settings())
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def measured(headers: dict[str, str]) -> tuple[list[str], dict[str, Any]]:
        # The first call of a user records the sign-in (an UPDATE, once a while).
        assert profile.get("/me/dashboard", headers=headers).status_code == 200
        statements.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            response = profile.get("/me/dashboard", headers=headers)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert response.status_code == 200
        return list(statements), response.json

    little, _ = measured(newcomer)
    much, body = measured(veteran)
    # The veteran's dashboard is full, and bounded by its page sizes.
    assert len(body["courses"]) == COURSES
    assert len(body["recent"]) == RECENT
    assert len(body["today"]) == 10
    assert body["user"]["total_points"] == 300
    # The same statements, one per part of the screen.
    assert len(much) == len(little) <= 5, much
    assert [s.split()[0] for s in much] == [s.split()[0] for s in little]
