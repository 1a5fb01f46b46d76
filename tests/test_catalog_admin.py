"""catalog writes: majors, courses, material types and lecturers, by admins only.

Every call goes through the catalog function's real app; what it wrote (or
did not write) is read back from the database directly, audit rows included.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import cast

from shared.db.models import (
    AuditLog,
    Course,
    FileRequest,
    Lecturer,
    Major,
    Material,
    MaterialType,
)
from tests.factories import (
    make_course,
    make_lecturer,
    make_major,
    make_material,
    make_material_type,
    make_user,
)
from tests.parallel import run_together

Sessions = sessionmaker[Session]


@pytest.fixture(scope="module")
def client(function_client: Callable[[str], Any]) -> Any:
    return function_client("catalog")


@pytest.fixture
def admin_user(user_token: Callable[..., Any]) -> tuple[uuid.UUID, dict[str, str]]:
    user_id, headers = user_token("ADMIN")
    return user_id, headers


@pytest.fixture
def admin(admin_user: tuple[uuid.UUID, dict[str, str]]) -> dict[str, str]:
    return admin_user[1]


@pytest.fixture
def student(user_token: Callable[..., Any]) -> dict[str, str]:
    return user_token()[1]


def audit_rows(sessions: Sessions, target_id: uuid.UUID | str) -> list[tuple[str, str, Any]]:
    """(action, target_type, meta) of every audit row naming the id, oldest first."""
    with sessions.begin() as session:
        rows = session.scalars(
            select(AuditLog)
            .where(AuditLog.target_ids.contains(cast([str(target_id)], JSONB)))
            .order_by(AuditLog.timestamp, AuditLog.id)
        ).all()
        return [(row.action, row.target_type, row.meta_data) for row in rows]


def audit_actors(sessions: Sessions, target_id: uuid.UUID | str) -> set[uuid.UUID | None]:
    with sessions.begin() as session:
        return set(
            session.scalars(
                select(AuditLog.actor_id).where(
                    AuditLog.target_ids.contains(cast([str(target_id)], JSONB))
                )
            )
        )


def audit_count(sessions: Sessions) -> int:
    with sessions.begin() as session:
        return session.scalar(select(func.count()).select_from(AuditLog)) or 0


def pending_request(
    session: Session, *, course: Course, lecturer: Lecturer, material_type: MaterialType
) -> FileRequest:
    """A pending request (no material yet): a reference the materials table does not show."""
    suffix = uuid.uuid4().hex[:10]
    request = FileRequest(
        user_id=make_user(session).id,
        course_id=course.id,
        type_id=material_type.id,
        lecturer_id=lecturer.id,
        title=f"Pending {suffix}",
        academic_year=1,
        material_year=2024,
        file_url=f"pending/{suffix}.pdf",
        original_filename=f"{suffix}.pdf",
        sha256=hashlib.sha256(suffix.encode()).hexdigest(),
        size_bytes=1000,
        page_count=3,
    )
    session.add(request)
    session.flush()
    return request


# --- Who may write ------------------------------------------------------------


def test_students_get_403_and_nothing_changes(
    client: Any, student: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        major = make_major(session)
        course = make_course(session, major=major)
        lecturer = make_lecturer(session)
        into = make_lecturer(session)
        material_type = make_material_type(session)
        ids = (major.id, course.id, lecturer.id, into.id, material_type.id)
    calls = [
        ("post", "/majors", {"name": "Student Major"}),
        ("patch", f"/majors/{major.id}", {"name": "Renamed"}),
        ("delete", f"/majors/{major.id}", None),
        (
            "post",
            "/courses",
            {"code": "S1", "name": "X", "major_id": str(major.id), "year": 1, "semester": 1},
        ),
        ("patch", f"/courses/{course.id}", {"name": "Renamed"}),
        ("delete", f"/courses/{course.id}", None),
        ("post", "/material-types", {"display_name": "Student Type"}),
        ("patch", f"/material-types/{material_type.id}", {"display_name": "Renamed"}),
        ("delete", f"/material-types/{material_type.id}", None),
        ("post", "/lecturers", {"name": "Dr. Student"}),
        ("patch", f"/lecturers/{lecturer.id}", {"name": "Renamed"}),
        ("delete", f"/lecturers/{lecturer.id}", None),
        ("post", f"/lecturers/{lecturer.id}/merge", {"into_id": str(into.id)}),
    ]
    before = audit_count(sessions)
    for method, path, body in calls:
        response = getattr(client, method)(path, json=body, headers=student)
        assert response.status_code == 403, (method, path)
        assert response.json["error"]["code"] == "admin_only"
    with sessions.begin() as session:
        assert session.get(Major, ids[0]) is not None
        assert session.get(Major, ids[0]).name == major.name
        assert session.get(Course, ids[1]).name == course.name
        assert session.get(Lecturer, ids[2]) is not None
        assert session.get(MaterialType, ids[4]) is not None
        assert session.scalar(select(Major).where(Major.name == "Student Major")) is None
        assert session.scalar(select(Lecturer).where(Lecturer.name == "Dr. Student")) is None
    assert audit_count(sessions) == before


def test_new_routes_need_a_token(client: Any, sessions: Sessions) -> None:
    with sessions.begin() as session:
        course = make_course(session)
    assert client.post("/majors", json={"name": "Anonymous"}).status_code == 401
    assert client.get(f"/courses/{course.id}").status_code == 401
    assert client.delete(f"/courses/{course.id}").status_code == 401


# --- Create, update, delete each kind -------------------------------------------


def test_major_lifecycle_is_audited(
    client: Any,
    admin_user: tuple[uuid.UUID, dict[str, str]],
    admin: dict[str, str],
    sessions: Sessions,
) -> None:
    created = client.post("/majors", json={"name": "  Data Science & AI  "}, headers=admin)
    assert created.status_code == 201
    major = created.json["major"]
    # Whitespace trimmed; the slug made from the name when none is given.
    assert major == {"id": major["id"], "name": "Data Science & AI", "slug": "data-science-ai"}
    listed = client.get("/majors", headers=admin).json["majors"]
    assert major in listed

    updated = client.patch(
        f"/majors/{major['id']}",
        json={"slug": "data-science", "name": major["name"]},
        headers=admin,
    )
    assert updated.status_code == 200
    assert updated.json["major"]["slug"] == "data-science"

    assert client.delete(f"/majors/{major['id']}", headers=admin).status_code == 204
    with sessions.begin() as session:
        assert session.get(Major, uuid.UUID(major["id"])) is None
    assert audit_rows(sessions, major["id"]) == [
        (
            "create_major",
            "major",
            {"after": {"name": "Data Science & AI", "slug": "data-science-ai"}},
        ),
        (
            "update_major",
            "major",
            # Only what changed: the unchanged name is left out.
            {"before": {"slug": "data-science-ai"}, "after": {"slug": "data-science"}},
        ),
        (
            "delete_major",
            "major",
            {"before": {"name": "Data Science & AI", "slug": "data-science"}},
        ),
    ]
    assert audit_actors(sessions, major["id"]) == {admin_user[0]}


def test_course_lifecycle_and_detail(
    client: Any, admin: dict[str, str], student: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        first, second = make_major(session), make_major(session)
        first_json = {"id": str(first.id), "name": first.name, "slug": first.slug}
    body = {
        "code": "CS-101",
        "name": "Compilers",
        "major_id": str(first.id),
        "year": 3,
        "semester": 2,
    }
    created = client.post("/courses", json=body, headers=admin)
    assert created.status_code == 201
    course = created.json["course"]
    assert course == {
        "id": course["id"],
        "code": "CS-101",
        "name": "Compilers",
        "major_id": str(first.id),
        "year": 3,
        "semester": 2,
    }
    with sessions.begin() as session:
        row = session.get(Course, uuid.UUID(course["id"]))
        assert row is not None
        assert (row.year_id, row.semester) == (3, 2)
        make_material(session, course=row)
        make_material(session, course=row)
        # An unpublished (undone) material is not counted: students cannot see it.
        make_material(session, course=row).is_published = False

    detail = client.get(f"/courses/{course['id']}", headers=student)
    assert detail.status_code == 200
    assert detail.json["course"] == {**course, "major": first_json, "materials_count": 2}

    moved = client.patch(
        f"/courses/{course['id']}", json={"major_id": str(second.id), "year": 4}, headers=admin
    )
    assert moved.status_code == 200
    assert moved.json["course"]["major_id"] == str(second.id)
    assert moved.json["course"]["year"] == 4
    assert audit_rows(sessions, course["id"])[-1] == (
        "update_course",
        "course",
        {
            "before": {"major_id": str(first.id), "year": 3},
            "after": {"major_id": str(second.id), "year": 4},
        },
    )


def test_course_without_references_is_deleted(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        course = make_course(session, code="DEL-1", year_id=2)
    assert client.delete(f"/courses/{course.id}", headers=admin).status_code == 204
    with sessions.begin() as session:
        assert session.get(Course, course.id) is None
    assert client.get(f"/courses/{course.id}", headers=admin).status_code == 404
    action, target_type, meta = audit_rows(sessions, course.id)[-1]
    assert (action, target_type) == ("delete_course", "course")
    assert meta["before"]["code"] == "DEL-1"
    assert meta["before"]["year"] == 2


def test_material_type_lifecycle(client: Any, admin: dict[str, str], sessions: Sessions) -> None:
    created = client.post("/material-types", json={"display_name": "Cheat Sheet"}, headers=admin)
    assert created.status_code == 201
    type_id = created.json["material_type"]["id"]
    assert created.json["material_type"] == {"id": type_id, "display_name": "Cheat Sheet"}
    renamed = client.patch(
        f"/material-types/{type_id}", json={"display_name": "Formula Sheet"}, headers=admin
    )
    assert renamed.json["material_type"]["display_name"] == "Formula Sheet"
    types = client.get("/material-types", headers=admin).json["material_types"]
    assert {"id": type_id, "display_name": "Formula Sheet"} in types
    assert client.delete(f"/material-types/{type_id}", headers=admin).status_code == 204
    with sessions.begin() as session:
        assert session.get(MaterialType, uuid.UUID(type_id)) is None
    assert [row[0] for row in audit_rows(sessions, type_id)] == [
        "create_material_type",
        "update_material_type",
        "delete_material_type",
    ]


def test_lecturer_lifecycle(client: Any, admin: dict[str, str], sessions: Sessions) -> None:
    created = client.post("/lecturers", json={"name": "Prof. Ada Byron"}, headers=admin)
    assert created.status_code == 201
    lecturer_id = created.json["lecturer"]["id"]
    # A change of case only is the same person renamed, not a duplicate of itself.
    renamed = client.patch(
        f"/lecturers/{lecturer_id}", json={"name": "Prof. ADA Byron"}, headers=admin
    )
    assert renamed.status_code == 200
    assert renamed.json["lecturer"] == {"id": lecturer_id, "name": "Prof. ADA Byron"}
    assert client.delete(f"/lecturers/{lecturer_id}", headers=admin).status_code == 204
    with sessions.begin() as session:
        assert session.get(Lecturer, uuid.UUID(lecturer_id)) is None
    assert [row[0] for row in audit_rows(sessions, lecturer_id)] == [
        "create_lecturer",
        "update_lecturer",
        "delete_lecturer",
    ]


def test_a_patch_that_changes_nothing_writes_no_audit_row(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        lecturer = make_lecturer(session)
    response = client.patch(
        f"/lecturers/{lecturer.id}", json={"name": lecturer.name}, headers=admin
    )
    assert response.status_code == 200
    assert response.json["lecturer"]["name"] == lecturer.name
    assert client.patch(f"/lecturers/{lecturer.id}", json={}, headers=admin).status_code == 200
    assert audit_rows(sessions, lecturer.id) == []


# --- Bad input: 422 naming the field, nothing written ----------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/majors", {"name": "   "}, "name"),
        ("/majors", {"name": "Two\nLines"}, "name"),
        ("/majors", {"name": "Fine", "slug": "Not A Slug"}, "slug"),
        ("/majors", {"name": "Fine", "slug": "trailing-"}, "slug"),
        # Nothing of this name survives as ASCII, so a slug must be given.
        ("/majors", {"name": "מדעי המחשב"}, "slug"),
        ("/majors", {"name": "Fine", "colour": "red"}, "colour"),
        (
            "/courses",
            {"code": "Y5", "name": "N", "major_id": "MAJOR", "year": 5, "semester": 1},
            "year",
        ),
        (
            "/courses",
            {"code": "Y0", "name": "N", "major_id": "MAJOR", "year": 0, "semester": 1},
            "year",
        ),
        (
            "/courses",
            {"code": "YS", "name": "N", "major_id": "MAJOR", "year": "2", "semester": 1},
            "year",
        ),
        (
            "/courses",
            {"code": "S3", "name": "N", "major_id": "MAJOR", "year": 1, "semester": 3},
            "semester",
        ),
        (
            "/courses",
            {"code": "", "name": "N", "major_id": "MAJOR", "year": 1, "semester": 1},
            "code",
        ),
        (
            "/courses",
            {"code": "M1", "name": "N", "major_id": "nope", "year": 1, "semester": 1},
            "major_id",
        ),
        (
            "/courses",
            {"code": "M2", "name": "N", "major_id": "UNKNOWN", "year": 1, "semester": 1},
            "major_id",
        ),
        ("/courses", {"code": "M3", "name": "N", "year": 1, "semester": 1}, "major_id"),
        ("/material-types", {}, "display_name"),
        ("/material-types", {"display_name": "x" * 201}, "display_name"),
        ("/lecturers", {"name": None}, "name"),
        ("/lecturers", {"name": 7}, "name"),
    ],
)
def test_bad_creates_are_422_naming_the_field(
    client: Any,
    admin: dict[str, str],
    sessions: Sessions,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    with sessions.begin() as session:
        major_id = str(make_major(session).id)
        counts = {
            model: session.scalar(select(func.count()).select_from(model))
            for model in (Major, Course, MaterialType, Lecturer)
        }
    placeholders = {"MAJOR": major_id, "UNKNOWN": str(uuid.uuid4())}
    body = {
        key: placeholders.get(value, value) if isinstance(value, str) else value
        for key, value in body.items()
    }
    before = audit_count(sessions)
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == 422, response.json
    assert field in response.json["error"]["fields"]
    with sessions.begin() as session:
        for model, count in counts.items():
            assert session.scalar(select(func.count()).select_from(model)) == count
    assert audit_count(sessions) == before


def test_bad_changes_are_422_and_leave_the_row(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        course = make_course(session, year_id=2, semester=1)
        original = (course.name, course.major_id, course.year_id, course.semester)
    attempts = [
        ({"name": None}, "name"),
        ({"semester": 0}, "semester"),
        ({"year": 2.0}, "year"),
        ({"major_id": str(uuid.uuid4())}, "major_id"),
        ({"code": "ok-code", "id": str(uuid.uuid4())}, "id"),
    ]
    for body, field in attempts:
        response = client.patch(f"/courses/{course.id}", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field in response.json["error"]["fields"], body
    with sessions.begin() as session:
        row = session.get(Course, course.id)
        assert row is not None
        assert (row.name, row.major_id, row.year_id, row.semester) == original
    assert audit_rows(sessions, course.id) == []


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("patch", "/majors/{id}", {"name": "Whatever"}),
        ("delete", "/majors/{id}", None),
        ("patch", "/courses/{id}", {"name": "Whatever"}),
        ("delete", "/courses/{id}", None),
        ("get", "/courses/{id}", None),
        ("patch", "/material-types/{id}", {"display_name": "Whatever"}),
        ("delete", "/material-types/{id}", None),
        ("patch", "/lecturers/{id}", {"name": "Whatever"}),
        ("delete", "/lecturers/{id}", None),
        ("post", "/lecturers/{id}/merge", {"into_id": "INTO"}),
    ],
)
@pytest.mark.parametrize("unknown", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_ids_are_404(
    client: Any,
    admin: dict[str, str],
    sessions: Sessions,
    method: str,
    path: str,
    body: dict[str, str] | None,
    unknown: str,
) -> None:
    with sessions.begin() as session:
        into = str(make_lecturer(session).id)
    if body is not None:
        body = {key: into if value == "INTO" else value for key, value in body.items()}
    response = getattr(client, method)(path.format(id=unknown), json=body, headers=admin)
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


# --- Conflicts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/majors", {"name": "Taken Major", "slug": "fresh-slug"}, "name"),
        ("/majors", {"name": "Fresh Major", "slug": "taken-slug"}, "slug"),
        (
            "/courses",
            {"code": "TAKEN-1", "name": "Other", "major_id": "MAJOR", "year": 1, "semester": 1},
            "code",
        ),
        ("/material-types", {"display_name": "Taken Type"}, "display_name"),
        # Lecturer names are the same person in any case.
        ("/lecturers", {"name": "dr. TAKEN lecturer"}, "name"),
        ("/lecturers", {"name": "Dr. Taken Lecturer"}, "name"),
    ],
)
def test_duplicate_natural_keys_are_409(
    client: Any,
    admin: dict[str, str],
    sessions: Sessions,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    with sessions.begin() as session:
        if session.scalar(select(Major).where(Major.slug == "taken-slug")) is None:
            major = make_major(session, name="Taken Major", slug="taken-slug")
            make_course(session, major=major, code="TAKEN-1")
            make_material_type(session, display_name="Taken Type")
            make_lecturer(session, name="Dr. Taken Lecturer")
        major_id = session.scalar(select(Major.id).where(Major.slug == "taken-slug"))
    body = {key: str(major_id) if value == "MAJOR" else value for key, value in body.items()}
    before = audit_count(sessions)
    response = client.post(path, json=body, headers=admin)
    assert response.status_code == 409
    error = response.json["error"]
    assert error["code"] == "duplicate"
    assert list(error["fields"]) == [field]
    assert audit_count(sessions) == before


def test_renaming_onto_a_taken_key_is_409(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        taken, renamed = make_course(session), make_course(session)
        code = renamed.code
    response = client.patch(f"/courses/{renamed.id}", json={"code": taken.code}, headers=admin)
    assert response.status_code == 409
    assert response.json["error"]["fields"] == {"code": "is already taken"}
    with sessions.begin() as session:
        assert session.get(Course, renamed.id).code == code
    assert audit_rows(sessions, renamed.id) == []


def test_deleting_what_is_referenced_is_409_in_use(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        major_with_course = make_major(session)
        course = make_course(session, major=major_with_course)
        major_with_user = make_major(session)
        make_user(session, major_id=major_with_user.id)
        material = make_material(session, course=course)
        # A pending request alone keeps its course, type and lecturer.
        lonely = {
            "course": make_course(session),
            "lecturer": make_lecturer(session),
            "material_type": make_material_type(session),
        }
        pending_request(session, **lonely)
    in_use = [
        f"/majors/{major_with_course.id}",
        f"/majors/{major_with_user.id}",
        f"/courses/{course.id}",
        f"/material-types/{material.type_id}",
        f"/lecturers/{material.lecturer_id}",
        f"/courses/{lonely['course'].id}",
        f"/lecturers/{lonely['lecturer'].id}",
        f"/material-types/{lonely['material_type'].id}",
    ]
    before = audit_count(sessions)
    for path in in_use:
        response = client.delete(path, headers=admin)
        assert response.status_code == 409, path
        assert response.json["error"]["code"] == "in_use"
    message = client.delete(f"/courses/{course.id}", headers=admin).json["error"]["message"]
    assert "file requests: 1" in message
    assert "materials: 1" in message
    with sessions.begin() as session:
        assert session.get(Major, major_with_user.id) is not None
        assert session.get(Course, course.id) is not None
        assert session.get(Lecturer, material.lecturer_id) is not None
    assert audit_count(sessions) == before


# --- Merge ------------------------------------------------------------------------


def test_merge_moves_materials_and_requests_then_deletes_the_lecturer(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        source = make_lecturer(session, name="Dr. J. Smith")
        into = make_lecturer(session, name="Dr. John Smith")
        bystander = make_lecturer(session)
        materials = [make_material(session, lecturer=source).id for _ in range(2)]
        kept = make_material(session, lecturer=bystander).id
        request = pending_request(
            session,
            course=make_course(session),
            lecturer=source,
            material_type=make_material_type(session),
        ).id
    response = client.post(
        f"/lecturers/{source.id}/merge", json={"into_id": str(into.id)}, headers=admin
    )
    assert response.status_code == 200
    assert response.json == {
        "lecturer": {"id": str(into.id), "name": "Dr. John Smith"},
        "moved": {"requests": 3, "materials": 2},
    }
    with sessions.begin() as session:
        assert session.get(Lecturer, source.id) is None
        for material_id in materials:
            assert session.get(Material, material_id).lecturer_id == into.id
            assert session.get(FileRequest, material_id).lecturer_id == into.id
        assert session.get(FileRequest, request).lecturer_id == into.id
        assert session.get(Material, kept).lecturer_id == bystander.id
    listed = client.get("/materials", query_string={"lecturer_id": str(into.id)}, headers=admin)
    assert sorted(m["id"] for m in listed.json["materials"]) == sorted(map(str, materials))
    assert audit_rows(sessions, source.id) == [
        (
            "merge_lecturer",
            "lecturer",
            {
                "from": {"id": str(source.id), "name": "Dr. J. Smith"},
                "into": {"id": str(into.id), "name": "Dr. John Smith"},
                "requests": 3,
                "materials": 2,
            },
        )
    ]


def test_merge_into_itself_or_an_unknown_lecturer_is_422(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        lecturer = make_lecturer(session)
        material = make_material(session, lecturer=lecturer).id
    for into_id in (str(lecturer.id), str(uuid.uuid4()), "nope"):
        response = client.post(
            f"/lecturers/{lecturer.id}/merge", json={"into_id": into_id}, headers=admin
        )
        assert response.status_code == 422
        assert "into_id" in response.json["error"]["fields"]
    with sessions.begin() as session:
        assert session.get(Lecturer, lecturer.id) is not None
        assert session.get(Material, material).lecturer_id == lecturer.id
    assert audit_rows(sessions, lecturer.id) == []


# --- Races --------------------------------------------------------------------------


def _post(client: Any, path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, Any]:
    response = client.post(path, json=body, headers=headers)
    return response.status_code, response.json


@pytest.mark.parametrize(
    ("path", "bodies", "field"),
    [
        ("/majors", [{"name": "Race Major"}] * 6, "name"),
        # Different case: only the lower(name) index can see these collide.
        (
            "/lecturers",
            [{"name": f"Dr. {'RACE' if n % 2 else 'Race'} Winner"} for n in range(6)],
            "name",
        ),
        ("/material-types", [{"display_name": "Race Type"}] * 6, "display_name"),
    ],
)
def test_parallel_duplicate_creates_give_one_201_and_409s(
    client: Any,
    admin: dict[str, str],
    sessions: Sessions,
    path: str,
    bodies: list[dict[str, Any]],
    field: str,
) -> None:
    before = audit_count(sessions)
    results = run_together(
        [partial(_post, client.application.test_client(), path, body, admin) for body in bodies]
    )
    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * (len(bodies) - 1)
    for status, body in results:
        if status == 409:
            assert body["error"]["code"] == "duplicate"
            assert list(body["error"]["fields"]) == [field]
    # One create, one audit row.
    assert audit_count(sessions) == before + 1


def test_parallel_course_creates_with_one_code(
    client: Any, admin: dict[str, str], sessions: Sessions
) -> None:
    with sessions.begin() as session:
        major_id = str(make_major(session).id)
    body = {"code": "RACE-1", "name": "Race", "major_id": major_id, "year": 1, "semester": 1}
    results = run_together(
        [
            partial(_post, client.application.test_client(), "/courses", body, admin)
            for _ in range(6)
        ]
    )
    assert sorted(status for status, _ in results) == [201] + [409] * 5
    with sessions.begin() as session:
        assert session.scalar(select(func.count()).where(Course.code == "RACE-1")) == 1
