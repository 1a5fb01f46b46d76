"""Reading progress across sessions (resume), its durability, and the reads built on it.

Real functions, real Postgres: the heartbeat function's app with real tokens,
parallel sessions on threads, and the commit's ``synchronous_commit`` read on
the real connection at the moment of each commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from sqlalchemy import create_engine, event, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import (
    FileViewingSession,
    Material,
    PointsTransaction,
    ReadingProgress,
    User,
)
from shared.migrate import upgrade
from tests.clocks import FakeClock
from tests.factories import make_course, make_material, make_material_type, make_user
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


def new_course(
    sessions: sessionmaker[Session], pages: list[int], **fields: Any
) -> tuple[uuid.UUID, list[uuid.UUID]]:
    with sessions.begin() as session:
        course = make_course(session, **fields)
        ids = [
            make_material(session, course=course, page_count=p, title=f"Part {index}").id
            for index, p in enumerate(pages, start=1)
        ]
        return course.id, ids


def start(client: Any, headers: dict[str, str], file_id: uuid.UUID) -> dict[str, Any]:
    response = client.post("/sessions", json={"file_id": str(file_id)}, headers=headers)
    assert response.status_code == 201, response.json
    return dict(response.json["session"])


def beat(client: Any, headers: dict[str, str], session_id: str, seconds: int) -> dict[str, Any]:
    response = client.post(
        f"/sessions/{session_id}/beat", json={"active_seconds": seconds}, headers=headers
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def ledger_of(sessions: sessionmaker[Session], user_id: uuid.UUID) -> tuple[int, list[str]]:
    with sessions.begin() as session:
        user = session.get(User, user_id)
        assert user is not None
        actions = session.scalars(
            select(PointsTransaction.action)
            .where(PointsTransaction.user_id == user_id)
            .order_by(PointsTransaction.action)
        ).all()
        return user.total_points, list(actions)


def progress_row(
    sessions: sessionmaker[Session], user_id: uuid.UUID, file_id: uuid.UUID
) -> ReadingProgress:
    with sessions.begin() as session:
        row = session.get(ReadingProgress, (user_id, file_id))
        assert row is not None
        session.expunge(row)
        return row


# --- resume -------------------------------------------------------------------------


def test_a_new_session_resumes_where_the_last_one_stopped(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    _, (file_id, _other) = new_course(sessions, [1, 1])  # 27 s each
    first = start(client, headers, file_id)
    assert (first["active_seconds"], first["completion_score"]) == (0, 0)
    fake_clock.advance(10)
    assert beat(client, headers, first["id"], 10)["session"]["active_seconds"] == 10

    # The next day, another session on the same file starts from 10 seconds.
    fake_clock.advance(86_400)
    second = start(client, headers, file_id)
    assert second["id"] != first["id"]
    assert second["active_seconds"] == 10
    assert second["completion_score"] == pytest.approx(10 / 27)
    assert second["is_complete"] is False

    # The caps are the session's own: its first beat gets no more than the
    # wall-clock time since it started (the day in between counts for nothing).
    fake_clock.advance(12)
    body = beat(client, headers, second["id"], 30)
    assert (body["credited_seconds"], body["session"]["active_seconds"]) == (12, 22)
    assert body["awarded"] == []
    fake_clock.advance(5)
    body = beat(client, headers, second["id"], 5)
    assert body["session"]["active_seconds"] == 27
    assert body["session"]["is_complete"] is True
    assert [a["action"] for a in body["awarded"]] == ["file_completed"]
    assert body["awarded"][0] == {"action": "file_completed", "amount": 10, "file_id": str(file_id)}
    assert body["course"]["files_completed"] == 1

    # A third session opens complete, and completing again awards nothing.
    fake_clock.advance(60)
    third = start(client, headers, file_id)
    assert (third["active_seconds"], third["is_complete"], third["completion_score"]) == (
        27,
        True,
        1,
    )
    fake_clock.advance(30)
    assert beat(client, headers, third["id"], 30)["awarded"] == []
    assert ledger_of(sessions, user_id) == (10, ["file_completed"])

    # The session's own view, and its Location.
    response = client.get(f"/sessions/{second['id']}", headers=headers)
    assert response.status_code == 200
    assert response.json["session"]["active_seconds"] == 27
    _, stranger = user_token()
    assert client.get(f"/sessions/{second['id']}", headers=stranger).status_code == 404


def test_session_creation_says_where_the_session_is(
    client: Any, user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    _, headers = user_token()
    _, (file_id,) = new_course(sessions, [3])
    response = client.post("/sessions", json={"file_id": str(file_id)}, headers=headers)
    assert response.status_code == 201
    location = response.headers["Location"]
    assert location.endswith(f"/sessions/{response.json['session']['id']}")
    assert client.get(location, headers=headers).json == response.json


def test_two_parallel_sessions_share_one_clock_and_one_award(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    """Two tabs on the same file: together they credit no more than the time that passed."""
    user_id, headers = user_token()
    _, (file_id, _other) = new_course(sessions, [2, 2])  # 54 s each
    tabs = [start(client, headers, file_id)["id"] for _ in range(2)]
    fake_clock.advance(60)
    clients = [client.application.test_client() for _ in range(20)]
    bodies = run_together(
        [
            partial(lambda own, tab: beat(own, headers, tab, 30), own, tabs[index % 2])
            for index, own in enumerate(clients)
        ]
    )
    credited = sum(body["credited_seconds"] for body in bodies)
    # One session alone could credit 60 s in 60 s; two must not credit 120.
    assert credited == 60
    row = progress_row(sessions, user_id, file_id)
    assert row.active_seconds == credited
    assert row.is_complete
    awards = [award for body in bodies for award in body["awarded"]]
    assert [award["action"] for award in awards] == ["file_completed"]
    assert ledger_of(sessions, user_id) == (10, ["file_completed"])
    with sessions.begin() as session:
        seen = session.scalars(
            select(FileViewingSession.active_seconds).where(
                FileViewingSession.id.in_([uuid.UUID(tab) for tab in tabs])
            )
        ).all()
    # Each session shows the file's total as of its own last beat.
    assert max(seen) == credited


def test_parallel_beats_completing_different_files_award_the_course_once(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    _, files = new_course(sessions, [1, 1, 1, 1])
    tabs = [start(client, headers, file_id)["id"] for file_id in files for _ in range(2)]
    fake_clock.advance(30)
    clients = [client.application.test_client() for _ in tabs]
    bodies = run_together(
        [
            partial(lambda own, tab: beat(own, headers, tab, 30), own, tab)
            for own, tab in zip(clients, tabs, strict=True)
        ]
    )
    actions = sorted(award["action"] for body in bodies for award in body["awarded"])
    assert actions == ["course_complete"] + ["file_completed"] * 4
    assert ledger_of(sessions, user_id) == (140, ["course_complete"] + ["file_completed"] * 4)


# --- durability -----------------------------------------------------------------------


@pytest.fixture
def commit_durability(function_env: dict[str, str]) -> Iterator[list[str]]:
    """``synchronous_commit`` as each commit of the functions' engine finds it."""
    from shared.config import load_settings
    from shared.db.engine import get_engine

    engine = get_engine(load_settings())
    seen: list[str] = []

    def on_commit(connection: Any) -> None:
        # Read on the transaction's own connection, just before COMMIT is sent.
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute("SHOW synchronous_commit")
            seen.append(cursor.fetchone()[0])
        finally:
            cursor.close()

    event.listen(engine, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(engine, "commit", on_commit)


def test_plain_beats_commit_asynchronously_and_awarding_beats_durably(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
    commit_durability: list[str],
) -> None:
    user_id, headers = user_token()
    _, (file_id,) = new_course(sessions, [1])
    viewing = start(client, headers, file_id)
    assert commit_durability == ["on"]  # everything else keeps the server's default

    fake_clock.advance(10)
    assert beat(client, headers, viewing["id"], 10)["awarded"] == []
    assert commit_durability[-1] == "off"

    fake_clock.advance(20)
    body = beat(client, headers, viewing["id"], 20)
    assert [a["action"] for a in body["awarded"]] == ["file_completed", "course_complete"]
    assert commit_durability[-1] == "on"
    # The ledger rows were in that durable commit.
    assert ledger_of(sessions, user_id) == (110, ["course_complete", "file_completed"])

    fake_clock.advance(20)
    assert beat(client, headers, viewing["id"], 20)["awarded"] == []
    assert commit_durability[-1] == "off"
    assert len(commit_durability) == 4


# --- GET /progress --------------------------------------------------------------------


def test_progress_lists_the_started_courses_with_every_published_file(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    older, older_files = new_course(sessions, [1, 2])
    newer, (newer_file, hidden) = new_course(sessions, [1, 1])
    _untouched, _ = new_course(sessions, [1])
    viewing = start(client, headers, older_files[0])
    fake_clock.advance(30)
    beat(client, headers, viewing["id"], 30)
    fake_clock.advance(60)
    viewing = start(client, headers, newer_file)
    fake_clock.advance(5)
    beat(client, headers, viewing["id"], 5)
    with sessions.begin() as session:
        session.execute(update(Material).where(Material.id == hidden).values(is_published=False))

    response = client.get("/progress", headers=headers)
    assert response.status_code == 200
    courses = response.json["courses"]
    assert [c["course_id"] for c in courses] == [str(newer), str(older)]
    assert courses[0] == {
        "course_id": str(newer),
        "status": "not_started",
        "files_completed": 0,
        "total_files": 1,
        "files": [
            {
                "file_id": str(newer_file),
                "active_seconds": 5,
                "required_active_seconds": 27,
                "completion_score": pytest.approx(5 / 27),
                "is_complete": False,
            }
        ],
    }
    assert courses[1]["status"] == "engaged"
    assert (courses[1]["files_completed"], courses[1]["total_files"]) == (1, 2)
    assert courses[1]["files"] == [
        {
            "file_id": str(older_files[0]),
            "active_seconds": 30,
            "required_active_seconds": 27,
            "completion_score": 1.0,
            "is_complete": True,
        },
        {
            "file_id": str(older_files[1]),
            "active_seconds": 0,
            "required_active_seconds": 54,
            "completion_score": 0.0,
            "is_complete": False,
        },
    ]

    # One course, asked for by id, even one not started.
    one = client.get("/progress", query_string={"course_id": str(older)}, headers=headers)
    assert one.json["courses"] == [courses[1]]
    fresh = client.get("/progress", query_string={"course_id": str(_untouched)}, headers=headers)
    (course,) = fresh.json["courses"]
    assert (course["status"], course["files_completed"], course["total_files"]) == (
        "not_started",
        0,
        1,
    )
    assert course["files"][0]["active_seconds"] == 0

    # Only the caller's own progress.
    _, stranger = user_token()
    assert client.get("/progress", headers=stranger).json == {"courses": []}
    theirs = client.get("/progress", query_string={"course_id": str(older)}, headers=stranger)
    assert [f["active_seconds"] for f in theirs.json["courses"][0]["files"]] == [0, 0]


def test_progress_of_an_unknown_course_is_404_and_a_bad_id_422(
    client: Any, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    missing = client.get(
        "/progress", query_string={"course_id": str(uuid.uuid4())}, headers=headers
    )
    assert missing.status_code == 404
    bad = client.get("/progress", query_string={"course_id": "nope"}, headers=headers)
    assert bad.status_code == 422
    assert "course_id" in bad.json["error"]["fields"]
    extra = client.get("/progress", query_string={"courses": "x"}, headers=headers)
    assert extra.status_code == 422


def test_recent_entries_carry_course_type_pages_and_score(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    with sessions.begin() as session:
        course = make_course(session, name="Linear Algebra")
        kind = make_material_type(session, display_name=f"Slides {uuid.uuid4().hex[:6]}")
        material = make_material(
            session, course=course, material_type=kind, page_count=2, title="Week 1"
        )
        file_id, type_name, course_id = material.id, kind.display_name, course.id
    viewing = start(client, headers, file_id)
    fake_clock.advance(27)
    beat(client, headers, viewing["id"], 27)
    (entry,) = client.get("/recent", headers=headers).json["files"]
    assert entry == {
        "file_id": str(file_id),
        "title": "Week 1",
        "course_id": str(course_id),
        "course_name": "Linear Algebra",
        "type_name": type_name,
        "page_count": 2,
        "completion_score": 0.5,
        "viewed_at": "2026-03-01T09:00:00Z",
    }


# --- migration 0015 -------------------------------------------------------------------


def test_migration_0015_backfills_progress_from_existing_sessions(
    new_database: Callable[..., str],
) -> None:
    engine = create_engine(new_database(empty=True))
    try:
        with engine.begin() as connection:
            upgrade(connection, "0014")
        start_a = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
        with Session(engine) as session, session.begin():
            reader = make_user(session)
            course = make_course(session)
            done, partial_file, summed = (
                make_material(session, course=course, page_count=1) for _ in range(3)
            )
            ids = (reader.id, done.id, partial_file.id, summed.id)

            def add(material: Material, started: datetime, seconds: int, complete: bool) -> None:
                session.add(
                    FileViewingSession(
                        user_id=reader.id,
                        file_id=material.id,
                        course_id=course.id,
                        started_at=started,
                        last_beat_at=started + timedelta(seconds=seconds),
                        active_seconds=seconds,
                        required_active_seconds=27,
                        completion_score=min(1.0, seconds / 27),
                        is_complete=complete,
                        completed_at=started + timedelta(seconds=27) if complete else None,
                    )
                )

            add(done, start_a, 30, True)
            add(done, start_a + timedelta(days=1), 5, False)
            add(partial_file, start_a, 12, False)
            # Two sessions reached the required time only together: no XP was
            # ever awarded, so the file is not complete yet (its next beat completes it).
            add(summed, start_a, 20, False)
            add(summed, start_a + timedelta(days=2), 15, False)
        with engine.begin() as connection:
            upgrade(connection)
        reader_id, done_id, partial_id, summed_id = ids
        with Session(engine) as session:
            rows = {
                row.file_id: row
                for row in session.scalars(
                    select(ReadingProgress).where(ReadingProgress.user_id == reader_id)
                )
            }
        assert (rows[done_id].active_seconds, rows[done_id].is_complete) == (35, True)
        assert rows[done_id].completed_at == start_a + timedelta(seconds=27)
        assert rows[done_id].credited_through == start_a + timedelta(days=1, seconds=5)
        assert (rows[partial_id].active_seconds, rows[partial_id].is_complete) == (12, False)
        assert rows[partial_id].credited_through == start_a + timedelta(seconds=12)
        assert (rows[summed_id].active_seconds, rows[summed_id].is_complete) == (35, False)
        with Session(engine) as session:
            assert session.scalar(select(func.count()).select_from(ReadingProgress)) == 3
    finally:
        engine.dispose()
