"""201 responses carry a Location the client can follow.

Presence on every 201 is enforced by the OpenAPI check on every response
(``Location`` is a required header of each 201); here the values.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import make_course, make_lecturer, make_material, make_material_type
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def apps(function_client: Callable[[str], Any]) -> dict[str, Any]:
    return {name: function_client(name) for name in ("catalog", "submit", "tasks")}


def test_catalog_creates_point_at_the_new_row(
    apps: dict[str, Any], user_token: Callable[..., Any]
) -> None:
    _, admin = user_token("ADMIN")
    client = apps["catalog"]
    major = client.post("/majors", json={"name": "Location Studies"}, headers=admin)
    assert major.status_code == 201
    assert major.headers["Location"] == f"/majors/{major.json['major']['id']}"
    course = client.post(
        "/courses",
        json={
            "code": "LOC101",
            "name": "Following links",
            "major_id": major.json["major"]["id"],
            "year": 1,
            "semester": 1,
        },
        headers=admin,
    )
    assert course.status_code == 201
    followed = client.get(course.headers["Location"], headers=admin)
    assert followed.status_code == 200
    assert followed.json["course"]["code"] == "LOC101"
    kind = client.post("/material-types", json={"display_name": "Located"}, headers=admin)
    assert kind.headers["Location"] == f"/material-types/{kind.json['material_type']['id']}"
    lecturer = client.post("/lecturers", json={"name": "Dr. Loc"}, headers=admin)
    assert lecturer.headers["Location"] == f"/lecturers/{lecturer.json['lecturer']['id']}"


def test_a_submitted_file_points_at_its_request(
    apps: dict[str, Any], user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        course = make_course(session)
        refs = {
            "course_id": str(course.id),
            "type_id": str(make_material_type(session).id),
            "lecturer_id": str(make_lecturer(session).id),
            "title": "Where it went",
            "academic_year": str(course.year_id),
            "material_year": "2024",
        }
    _, student = user_token()
    client = apps["submit"]
    pdf = make_pdf(["A page to be found again"])
    created = client.post(
        "/",
        data={**refs, "file": (io.BytesIO(pdf), "found.pdf", "application/pdf")},
        headers=student,
    )
    assert created.status_code == 201, created.json
    assert created.headers["Location"] == f"/{created.json['request']['id']}"
    followed = client.get(created.headers["Location"], headers=student)
    assert followed.json["request"] == created.json["request"]
    # An upload session's Location is where its bytes go, as GCS answers one.
    opened = client.post(
        "/uploads",
        json={"filename": "big.pdf", "size_bytes": 1000, "content_type": "application/pdf"},
        headers=student,
    )
    assert opened.status_code == 201, opened.json
    assert opened.headers["Location"] == opened.json["upload"]["upload_url"]


def test_tasks_and_plans_point_at_what_they_made(
    apps: dict[str, Any], user_token: Callable[..., Any], sessions: sessionmaker[Session]
) -> None:
    _, student = user_token()
    client = apps["tasks"]
    day = date.today() + timedelta(days=3)
    task = client.post(
        "/",
        json={"title": "Revise", "date": day.isoformat(), "start_hour": 9.0, "duration": 1.0},
        headers=student,
    )
    assert task.status_code == 201
    assert task.headers["Location"] == f"/{task.json['task']['id']}"
    assert client.get(task.headers["Location"], headers=student).json["task"] == task.json["task"]
    # Another user's task is not theirs to read.
    _, other = user_token()
    assert client.get(task.headers["Location"], headers=other).status_code == 404

    with sessions.begin() as session:
        material = make_material(session, page_count=20)
        course_id = material.course_id
    plan = client.post(
        "/plan",
        json={"course_id": str(course_id), "exam_date": (day + timedelta(days=7)).isoformat()},
        headers=student,
    )
    assert plan.status_code == 201, plan.json
    listing = client.get(plan.headers["Location"], headers=student)
    assert listing.status_code == 200
    listed = {row["id"] for row in listing.json["tasks"]}
    assert {row["id"] for row in plan.json["tasks"]} <= listed
