"""tasks: study plans, overlap warnings and the calendar export, through the real function."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import icalendar
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import Course, FileViewingSession, Material, ReadingProgress, UserTask
from shared.reading import required_seconds
from shared.tasks import reading_left
from tests.clocks import FakeClock
from tests.factories import make_course, make_material, make_user
from tests.parallel import run_together

# The FakeClock starts on Sunday 2026-03-01 at 09:00 UTC: 10:00 in Berlin.
BERLIN = "Europe/Berlin"


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("tasks")


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


def credit(
    session: Session, user_id: uuid.UUID, material: Material, seconds: int, complete: bool = False
) -> None:
    """A reading session with ``seconds`` credited and the progress row it adds
    to, as heartbeat leaves them (the plan reads the progress)."""
    required = required_seconds(material.page_count)
    session.add(
        FileViewingSession(
            user_id=user_id,
            file_id=material.id,
            course_id=material.course_id,
            active_seconds=seconds,
            required_active_seconds=required,
            completion_score=min(1.0, seconds / required),
            is_complete=complete,
        )
    )
    now = datetime.now(UTC)
    progress = session.get(ReadingProgress, (user_id, material.id))
    if progress is None:
        progress = ReadingProgress(
            user_id=user_id, file_id=material.id, active_seconds=0, is_complete=False
        )
        session.add(progress)
    # A resumed session starts from the progress: the row holds the most read.
    progress.active_seconds = max(progress.active_seconds, seconds)
    progress.is_complete = progress.is_complete or complete
    progress.completed_at = now if progress.is_complete else None
    progress.credited_through = progress.updated_at = now
    session.flush()


def course_for(
    sessions: sessionmaker[Session], user_id: uuid.UUID
) -> tuple[uuid.UUID, dict[str, uuid.UUID]]:
    """The frontend guide's course (docs/frontend.md, "Study plans"): three files
    left to read, one done, one hidden."""
    with sessions.begin() as session:
        course = make_course(session, name="Linear Algebra")
        files = {
            title: make_material(session, course=course, title=title, page_count=pages)
            for title, pages in [
                ("Lecture 3", 200),
                ("Lecture 1", 40),
                ("Lecture 2", 100),
                ("Intro", 10),
                ("Withdrawn notes", 30),
            ]
        }
        files["Withdrawn notes"].is_published = False
        # A later material year comes after, whatever its title says.
        files["Appendix"] = make_material(
            session, course=course, title="Appendix", page_count=1, material_year=2025
        )
        credit(session, user_id, files["Intro"], 270, complete=True)
        # 2700 s required; the progress holds the most read, 899 s: 1801 s (two
        # half hours) are left, where a sum over sessions would leave 1501 s (one).
        credit(session, user_id, files["Lecture 2"], 899)
        credit(session, user_id, files["Lecture 2"], 300)
        # Someone else's reading changes nothing for this user.
        credit(session, make_user(session).id, files["Lecture 3"], 5000)
        return course.id, {title: material.id for title, material in files.items()}


def task(**fields: Any) -> dict[str, Any]:
    return {"title": "Gym", "date": "2026-03-01", "start_hour": 10, "duration": 1, **fields}


def plan(client: Any, headers: dict[str, str], **fields: Any) -> Any:
    return client.post("/plan", json={"tz": BERLIN, **fields}, headers=headers)


def all_tasks(sessions: sessionmaker[Session], user_id: uuid.UUID) -> list[tuple[Any, ...]]:
    with sessions.begin() as session:
        rows = session.scalars(
            select(UserTask)
            .where(UserTask.user_id == user_id)
            .order_by(UserTask.date, UserTask.start_hour, UserTask.title)
        ).all()
        return [
            (str(t.date), t.start_hour, t.duration, t.title, t.completed, t.plan_id) for t in rows
        ]


def test_a_plan_reads_what_is_left_in_order_around_existing_tasks(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    course_id, files = course_for(sessions, user_id)
    assert client.post("/", json=task(), headers=headers).status_code == 201
    response = plan(client, headers, course_id=str(course_id), exam_date="2026-03-05")
    assert response.status_code == 201, response.json
    tasks = response.json["tasks"]
    assert [
        (t["date"], t["start_hour"], t["duration"], t["title"], t["priority"], t["file_id"])
        for t in tasks
    ] == [
        ("2026-03-01", 11.0, 0.5, "Read: Lecture 1", "normal", str(files["Lecture 1"])),
        ("2026-03-01", 11.5, 1.0, "Read: Lecture 2", "normal", str(files["Lecture 2"])),
        (
            "2026-03-01",
            12.5,
            0.5,
            "Read: Lecture 3 (part 1 of 2)",
            "normal",
            str(files["Lecture 3"]),
        ),
        (
            "2026-03-02",
            8.0,
            1.0,
            "Read: Lecture 3 (part 2 of 2)",
            "normal",
            str(files["Lecture 3"]),
        ),
        ("2026-03-02", 9.0, 0.5, "Read: Appendix", "normal", str(files["Appendix"])),
        ("2026-03-04", 21.0, 1.0, "Review: Linear Algebra", "high", None),
    ]
    assert {t["plan_id"] for t in tasks} != {None}
    assert len({t["plan_id"] for t in tasks}) == 1
    assert {t["course_id"] for t in tasks} == {str(course_id)}
    assert response.json["replaced"] == 0
    # What the answer says is what was stored, next to the hand-made task.
    listed = client.get(
        "/", query_string={"from": "2026-03-01", "to": "2026-03-07"}, headers=headers
    ).json["tasks"]
    assert [t for t in listed if t["plan_id"]] == tasks
    assert [t["title"] for t in listed if not t["plan_id"]] == ["Gym"]


def test_replanning_replaces_only_the_plans_own_tasks_ahead(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    course_id, _ = course_for(sessions, user_id)
    first = plan(client, headers, course_id=str(course_id), exam_date="2026-03-05").json["tasks"]
    # Completed (one past, one ahead): kept. Another course's plan: kept, and
    # its study counts toward the budget.
    for done in (first[0], first[3]):
        completed = client.patch(f"/{done['id']}", json={"completed": True}, headers=headers)
        assert completed.status_code == 200
    with sessions.begin() as session:
        other = make_course(session)
        make_material(session, course=other, title="Other", page_count=60)
        other_id = other.id
    fake_clock.advance(1.75 * 3600)  # 11:45 in Berlin: the 11:30 reading is under way
    other_plan = plan(client, headers, course_id=str(other_id), exam_date="2026-03-04")
    assert other_plan.status_code == 201, other_plan.json
    hand_made = client.post(
        "/", json=task(date="2026-03-02", start_hour=10, title="Seminar"), headers=headers
    ).json["task"]

    again = plan(client, headers, course_id=str(course_id), exam_date="2026-03-06")
    assert again.status_code == 201, again.json
    # Removed: Monday's appendix and the review, ahead and not completed.
    # Kept: Sunday 10:30 (past), 11:30 (under way), the two completed ones.
    assert again.json["replaced"] == 2
    after = all_tasks(sessions, user_id)
    titles = [row[3] for row in after]
    assert "Seminar" in titles
    assert hand_made["id"] in {
        t["id"]
        for t in client.get(
            "/", query_string={"from": "2026-03-02", "to": "2026-03-02"}, headers=headers
        ).json["tasks"]
    }
    kept_first = [row for row in after if row[5] == uuid.UUID(first[0]["plan_id"])]
    assert [(row[0], row[1], row[4]) for row in kept_first] == [
        ("2026-03-01", 10.0, True),
        ("2026-03-01", 10.5, False),
        ("2026-03-01", 11.5, False),
        ("2026-03-02", 8.0, True),
    ]
    # Nothing overlaps, and no day holds more than 120 minutes of plan study.
    by_day: dict[str, list[tuple[float, float]]] = {}
    for day, start, duration, *_ in after:
        by_day.setdefault(day, []).append((start, start + duration))
    for spans in by_day.values():
        spans.sort()
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
    for day in by_day:
        study = sum(row[2] for row in after if row[0] == day and row[5] is not None)
        assert study <= 2.0, day
    # Re-planning reads what is left now: Lecture 1 to 3 and the appendix again.
    new_titles = [t["title"] for t in again.json["tasks"]]
    assert new_titles[-1] == "Review: Linear Algebra"
    assert "Read: Appendix" in new_titles
    assert all((t["date"], t["start_hour"]) >= ("2026-03-01", 12.0) for t in again.json["tasks"])


def test_not_enough_time_is_409_with_the_shortfall_and_changes_nothing(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    course_id, _ = course_for(sessions, user_id)
    assert client.post("/", json=task(), headers=headers).status_code == 201
    assert (
        plan(client, headers, course_id=str(course_id), exam_date="2026-03-06").status_code == 201
    )
    before = all_tasks(sessions, user_id)
    response = plan(client, headers, course_id=str(course_id), exam_date="2026-03-02")
    assert response.status_code == 409
    error = response.json["error"]
    # 3.5 hours of reading; Sunday holds 2 hours, an hour of it the review:
    # 2.5 hours short. An exam on Tuesday 3 March gets Sunday's 2 hours and
    # Monday's 1 (the review takes the other): still short. Wednesday fits.
    assert error["code"] == "not_enough_time"
    assert (error["shortfall_minutes"], error["earliest_exam_date"]) == (150, "2026-03-04")
    assert error["request_id"]
    # The earlier plan was not replaced: the refusal rolled its removal back.
    assert all_tasks(sessions, user_id) == before
    # The date it names does fit.
    moved = plan(client, headers, course_id=str(course_id), exam_date=error["earliest_exam_date"])
    assert moved.status_code == 201


def test_busy_intervals_and_a_small_budget_push_reading_later(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    course_id, _ = course_for(sessions, user_id)
    response = plan(
        client,
        headers,
        course_id=str(course_id),
        exam_date="2026-03-05",
        daily_minutes=90,
        day_start_hour=9,
        day_end_hour=20,
        busy=[
            {"date": "2026-03-01", "start_hour": 10, "duration": 10},
            {"date": "2026-03-02", "start_hour": 9, "duration": 0.25},
        ],
    )
    assert response.status_code == 201, response.json
    assert [(t["date"], t["start_hour"], t["duration"]) for t in response.json["tasks"]] == [
        # Sunday is busy to the window's end. Monday: 9:00 is busy for a
        # quarter hour, so its whole slot is taken; then 90 minutes a day.
        ("2026-03-02", 9.5, 0.5),
        ("2026-03-02", 10.0, 1.0),
        ("2026-03-03", 9.0, 1.5),
        ("2026-03-04", 9.0, 0.5),
        # The review is the last hour of the eve's window (20:00 end).
        ("2026-03-04", 19.0, 1.0),
    ]


def test_a_course_with_nothing_left_gets_only_the_review(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    with sessions.begin() as session:
        course = make_course(session, name="Done Already")
        credit(session, user_id, make_material(session, course=course, page_count=1), 27, True)
        course_id = course.id
    response = plan(client, headers, course_id=str(course_id), exam_date="2026-03-02")
    assert response.status_code == 201
    assert [(t["title"], t["date"], t["start_hour"]) for t in response.json["tasks"]] == [
        ("Review: Done Already", "2026-03-01", 21.0)
    ]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"exam_date": "2026-03-01"}, "exam_date"),  # today in Berlin
        ({"exam_date": "2027-03-02"}, "exam_date"),  # past a year ahead
        ({"exam_date": "2026-02-30"}, "exam_date"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"tz": 1}, "tz"),
        ({"daily_minutes": 45}, "daily_minutes"),
        ({"daily_minutes": 0}, "daily_minutes"),
        ({"daily_minutes": "120"}, "daily_minutes"),
        ({"daily_minutes": 990}, "daily_minutes"),
        ({"course_id": "not-a-uuid"}, "course_id"),
        ({"course_id": str(uuid.uuid4())}, "course_id"),
        ({"day_start_hour": 8.25}, "day_start_hour"),
        ({"day_start_hour": 20, "day_end_hour": 20}, "day_end_hour"),
        ({"day_end_hour": 24.5}, "day_end_hour"),
        (
            {"busy": [{"date": "2026-03-02", "start_hour": 9.25, "duration": 1}]},
            "busy.0.start_hour",
        ),
        ({"busy": [{"date": "2026-03-02", "start_hour": 23, "duration": 2}]}, "busy.0"),
        ({"busy": [{"date": "2026-03-02", "start_hour": 9}]}, "busy.0.duration"),
        ({"busy": [{"date": "2026-03-02", "start_hour": 9, "duration": 1}] * 501}, "busy"),
        ({"busy": {"date": "2026-03-02"}}, "busy"),
        ({"owner": "me"}, "owner"),
    ],
)
def test_bad_plan_fields_are_422_naming_the_field(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
    changes: dict[str, Any],
    field: str,
) -> None:
    user_id, headers = user_token()
    with sessions.begin() as session:
        course = make_course(session)
        make_material(session, course=course)
        course_id = course.id
    body = {"course_id": str(course_id), "exam_date": "2026-03-10", **changes}
    response = plan(client, headers, **body)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"], response.json
    assert all_tasks(sessions, user_id) == []


def test_parallel_plans_of_one_user_never_overlap(
    client: Any,
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    with sessions.begin() as session:
        courses = [make_course(session) for _ in range(4)]
        for course in courses:
            make_material(session, course=course, page_count=100)
        ids = [str(course.id) for course in courses]
    clients = [client.application.test_client() for _ in ids]
    # Sign in once first: a first sight writes the user row, which would
    # serialise the plans by itself and hide a missing lock.
    assert client.get("/", headers=headers).status_code == 200

    def plan_for(own: Any, course_id: str, exam_date: str) -> Any:
        return plan(own, headers, course_id=course_id, exam_date=exam_date)

    # Different exams, so each review has its own eve; the reading competes for Sunday.
    exams = ["2026-03-08", "2026-03-09", "2026-03-10", "2026-03-11"]
    responses = run_together(
        [
            partial(plan_for, own, course_id, exam)
            for own, course_id, exam in zip(clients, ids, exams, strict=True)
        ]
    )
    assert [response.status_code for response in responses] == [201] * 4
    rows = all_tasks(sessions, user_id)
    assert len(rows) == 4 * 2  # an hour of reading and a review each
    for first, second in itertools.pairwise(rows):
        if first[0] == second[0]:
            assert first[1] + first[2] <= second[1], (first, second)
    per_day: dict[str, float] = {}
    for day, _, duration, *_ in rows:
        per_day[day] = per_day.get(day, 0) + duration
    assert max(per_day.values()) <= 2.0


def test_creating_or_moving_onto_another_task_reports_the_overlap(
    client: Any, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    _, stranger = user_token()
    client.post("/", json=task(start_hour=9, duration=2, title="Stranger's"), headers=stranger)
    lecture = client.post(
        "/", json=task(start_hour=9, duration=2, title="Lecture"), headers=headers
    ).json
    # "Gym" from 11:00 to 12:00.
    assert lecture["overlaps"] == []  # the stranger's task is not the caller's
    touching = client.post("/", json=task(start_hour=11, duration=1), headers=headers).json
    assert touching["overlaps"] == []  # ending when another starts is no overlap
    onto = client.post("/", json=task(start_hour=10.5, duration=1), headers=headers)
    assert onto.status_code == 201
    assert [t["title"] for t in onto.json["overlaps"]] == ["Lecture", "Gym"]
    moved = client.patch(f"/{touching['task']['id']}", json={"date": "2026-03-02"}, headers=headers)
    assert moved.status_code == 200
    assert moved.json["overlaps"] == []
    back = client.patch(
        f"/{touching['task']['id']}",
        json={"start_hour": 10, "date": "2026-03-01"},
        headers=headers,
    )
    assert [t["id"] for t in back.json["overlaps"]] == [
        lecture["task"]["id"],
        onto.json["task"]["id"],
    ]


def test_the_calendar_export_parses_with_utc_times_and_stable_uids(
    client: Any,
    user_token: Callable[..., Any],
    fake_clock: FakeClock,
) -> None:
    _, headers = user_token()
    _, stranger = user_token()
    client.post("/", json=task(title="Stranger's"), headers=stranger)
    made = [
        client.post("/", json=body, headers=headers).json["task"]
        for body in [
            task(title="Exam prep; chapters 1, 2 \\ 3", start_hour=9.5, duration=1.5),
            task(title="Late night — Überblick " + "x" * 120, start_hour=23, duration=1),
            # Summer time starts in Berlin on 2026-03-29: UTC+2 from then on.
            task(date="2026-03-30", start_hour=8, priority="urgent"),
            task(date="2026-04-30", title="Outside the range"),
        ]
    ]
    query = {"from": "2026-03-01", "to": "2026-03-31", "tz": BERLIN}
    response = client.get("/calendar.ics", query_string=query, headers=headers)
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    assert response.headers["Cache-Control"] == "no-store"
    raw = response.get_data()
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    calendar = icalendar.Calendar.from_ical(raw)
    events = {str(event["UID"]): event for event in calendar.walk("VEVENT")}
    assert set(events) == {f"{t['id']}@lectern" for t in made[:3]}

    def times(task_json: dict[str, Any]) -> tuple[datetime, datetime, str]:
        event = events[f"{task_json['id']}@lectern"]
        return event.decoded("DTSTART"), event.decoded("DTEND"), str(event["SUMMARY"])

    assert times(made[0]) == (
        datetime(2026, 3, 1, 8, 30, tzinfo=UTC),
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        "Exam prep; chapters 1, 2 \\ 3",
    )
    # Ends at midnight: the next day's 00:00 in Berlin.
    assert times(made[1])[:2] == (
        datetime(2026, 3, 1, 22, 0, tzinfo=UTC),
        datetime(2026, 3, 1, 23, 0, tzinfo=UTC),
    )
    assert times(made[1])[2] == made[1]["title"]
    assert times(made[2])[:2] == (
        datetime(2026, 3, 30, 6, 0, tzinfo=UTC),
        datetime(2026, 3, 30, 7, 0, tzinfo=UTC),
    )
    assert int(events[f"{made[2]['id']}@lectern"]["PRIORITY"]) == 1
    # The same tasks export with the same UIDs (a re-import updates, not duplicates).
    again = icalendar.Calendar.from_ical(
        client.get("/calendar.ics", query_string=query, headers=headers).get_data()
    )
    assert {str(e["UID"]) for e in again.walk("VEVENT")} == set(events)


@pytest.mark.parametrize(
    ("query", "field"),
    [({"tz": "Nowhere/City"}, "tz"), ({"from": "2026-03-10", "to": "2026-03-01"}, "to")],
)
def test_calendar_query_is_validated(
    client: Any, user_token: Callable[..., Any], query: dict[str, str], field: str
) -> None:
    _, headers = user_token()
    response = client.get("/calendar.ics", query_string=query, headers=headers)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_a_course_deleted_under_a_plan_leaves_its_tasks(
    sessions: sessionmaker[Session],
    client: Any,
    user_token: Callable[..., Any],
    fake_clock: FakeClock,
) -> None:
    user_id, headers = user_token()
    with sessions.begin() as session:
        course = make_course(session)
        course_id = course.id
    made = plan(client, headers, course_id=str(course_id), exam_date="2026-03-03")
    assert made.status_code == 201
    with sessions.begin() as session:
        session.delete(session.get(Course, course_id))
    with sessions.begin() as session:
        kept = session.scalars(select(UserTask).where(UserTask.user_id == user_id)).all()
        assert [(t.title, t.course_id, str(t.plan_id)) for t in kept] == [
            (made.json["tasks"][0]["title"], None, made.json["tasks"][0]["plan_id"])
        ]


def test_what_is_left_is_the_reading_progress_not_the_best_session(
    sessions: sessionmaker[Session],
) -> None:
    # Progress is what every session added up to (resume); sessions may hold less,
    # as migration 0015's backfill leaves a file read before resume existed.
    with sessions.begin() as session:
        user = make_user(session)
        course = make_course(session)
        material = make_material(session, course=course, page_count=100)  # 2700 s
        session.add(
            FileViewingSession(
                user_id=user.id,
                file_id=material.id,
                course_id=course.id,
                active_seconds=300,
                required_active_seconds=2700,
                completion_score=300 / 2700,
                is_complete=False,
            )
        )
        now = datetime.now(UTC)
        session.add(
            ReadingProgress(
                user_id=user.id,
                file_id=material.id,
                active_seconds=1200,
                is_complete=False,
                credited_through=now,
                updated_at=now,
            )
        )
    with sessions.begin() as session:
        left = reading_left(session, user_id=user.id, course_id=course.id)
    assert [(f.file_id, f.seconds) for f in left] == [(material.id, 1500)]
