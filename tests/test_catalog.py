"""catalog: reference lists and published materials."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared.local.demo import MATERIAL_TYPES, load_demo_data
from tests.factories import make_course, make_lecturer, make_major, make_material


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any], sessions: sessionmaker[Session]) -> Any:
    with sessions.begin() as session:
        load_demo_data(session)
    return function_client("catalog")


@pytest.fixture
def headers(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token()[1]


@pytest.mark.parametrize(
    "path",
    [
        "/majors",
        "/material-types",
        "/lecturers",
        "/courses",
        "/materials",
        f"/materials/{uuid.uuid4()}",
    ],
)
def test_every_route_needs_a_token(client: Any, path: str) -> None:
    assert client.get(path).status_code == 401


def test_majors_and_material_types(client: Any, headers: dict[str, str]) -> None:
    majors = client.get("/majors", headers=headers).json["majors"]
    assert "Software Engineering" in [m["name"] for m in majors]
    assert all(set(m) == {"id", "name", "slug"} for m in majors)
    types = client.get("/material-types", headers=headers).json["material_types"]
    assert sorted(t["display_name"] for t in types) >= sorted(MATERIAL_TYPES)


def test_lecturers_search_is_case_insensitive_and_literal(
    client: Any, headers: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        make_lecturer(session, name="Dr. Percent_Sign 100%")
    found = client.get("/lecturers", query_string={"q": "KATZ"}, headers=headers).json
    assert [lecturer["name"] for lecturer in found["lecturers"]] == ["Dr. Miriam Katz"]
    literal = client.get("/lecturers", query_string={"q": "0%"}, headers=headers).json
    assert [lecturer["name"] for lecturer in literal["lecturers"]] == ["Dr. Percent_Sign 100%"]
    assert client.get("/lecturers", query_string={"q": "_"}, headers=headers).json["lecturers"] == [
        {"id": literal["lecturers"][0]["id"], "name": "Dr. Percent_Sign 100%"}
    ]


def test_courses_filter_by_major_year_and_semester(
    client: Any, headers: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        major = make_major(session)
        wanted = make_course(session, major=major, year_id=2, semester=2, name="Wanted")
        make_course(session, major=major, year_id=2, semester=1)
        make_course(session, major=major, year_id=3, semester=2)
    query = {"major_id": str(major.id), "year": "2", "semester": "2"}
    courses = client.get("/courses", query_string=query, headers=headers).json["courses"]
    assert courses == [
        {
            "id": str(wanted.id),
            "code": wanted.code,
            "name": "Wanted",
            "major_id": str(major.id),
            "year": 2,
            "semester": 2,
        }
    ]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"year": "5"}, "year"),
        ({"semester": "3"}, "semester"),
        ({"major_id": "x"}, "major_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_course_filters_are_validated(
    client: Any, headers: dict[str, str], query: dict[str, str], field: str
) -> None:
    response = client.get("/courses", query_string=query, headers=headers)
    assert response.status_code == 422
    assert field in response.json["error"]["fields"]


def test_materials_are_listed_newest_first_with_cursor_pages(
    client: Any, headers: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with sessions.begin() as session:
        course = make_course(session)
        ids = [
            make_material(session, course=course, created_at=base + timedelta(minutes=n)).id
            for n in range(5)
        ]
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {
            "course_id": str(course.id),
            "limit": "2",
            **({"cursor": cursor} if cursor else {}),
        }
        body = client.get("/materials", query_string=query, headers=headers).json
        pages.append([m["id"] for m in body["materials"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == [[str(i) for i in ids[4:2:-1]], [str(i) for i in ids[2:0:-1]], [str(ids[0])]]


def test_material_fields_and_filters(
    client: Any, headers: dict[str, str], sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        course = make_course(session)
        lecturer = make_lecturer(session)
        target = make_material(
            session, course=course, lecturer=lecturer, material_year=2021, page_count=12
        )
        make_material(session, course=course, material_year=2022)
    query = {"course_id": str(course.id), "lecturer_id": str(lecturer.id), "material_year": "2021"}
    materials = client.get("/materials", query_string=query, headers=headers).json["materials"]
    assert [m["id"] for m in materials] == [str(target.id)]
    material = materials[0]
    assert material["page_count"] == 12
    assert material["ingest_status"] == "queued"
    assert material["chunk_count"] == 0
    assert material["ingest_error"] is None
    assert material["lecturer_name"] == lecturer.name
    assert "file_url" not in material


def test_get_material_has_a_download_url(
    client: Any, headers: dict[str, str], sessions: sessionmaker[Session], storage_host: str
) -> None:
    with sessions.begin() as session:
        material = make_material(session)
        file_url = material.file_url
    response = client.get(f"/materials/{material.id}", headers=headers)
    assert response.status_code == 200
    body = response.json["material"]
    assert body["id"] == str(material.id)
    assert body["download_url"].startswith(f"{storage_host}/download/storage/v1/b/lectern-test/o/")
    assert body["download_url"].endswith("?alt=media")
    from urllib.parse import quote

    assert quote(file_url, safe="") in body["download_url"]


@pytest.mark.parametrize(
    ("page_count", "lifetime"),
    [
        # 10 pages need 270 s of reading: the minimum hour.
        (10, timedelta(hours=1)),
        # 1000 pages need 27,000 s: twice that plus 30 minutes.
        (1000, timedelta(seconds=2 * 27_000 + 1_800)),
        # Never past the 7 days a V4 signed URL may live.
        (20_000, timedelta(days=7)),
    ],
)
def test_the_download_url_lasts_past_the_required_reading_time(
    client: Any,
    headers: dict[str, str],
    sessions: sessionmaker[Session],
    page_count: int,
    lifetime: timedelta,
) -> None:
    from shared.reading import required_seconds

    with sessions.begin() as session:
        material = make_material(session, page_count=page_count)
    before = datetime.now(UTC)
    body = client.get(f"/materials/{material.id}", headers=headers).json["material"]
    expires_at = datetime.fromisoformat(body["download_url_expires_at"].replace("Z", "+00:00"))
    assert body["download_url_expires_at"].endswith("Z")
    assert before + lifetime - timedelta(seconds=2) <= expires_at <= datetime.now(UTC) + lifetime
    if page_count < 20_000:
        reading = timedelta(seconds=required_seconds(page_count))
        assert expires_at - before >= reading + timedelta(minutes=30)
    # Reading it again is the refresh: a URL good from now on.
    again = client.get(f"/materials/{material.id}", headers=headers).json["material"]
    assert again["download_url_expires_at"] >= body["download_url_expires_at"]


@pytest.mark.parametrize("material_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_material_is_404(client: Any, headers: dict[str, str], material_id: str) -> None:
    response = client.get(f"/materials/{material_id}", headers=headers)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
