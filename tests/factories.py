"""Plain factory functions: each makes one row through the data layer."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared.db.models import (
    Course,
    FileRequest,
    Lecturer,
    Major,
    Material,
    MaterialType,
    User,
)


def _suffix() -> str:
    return uuid.uuid4().hex[:10]


def make_user(session: Session, *, role: str = "STUDENT", **fields: Any) -> User:
    suffix = _suffix()
    values: dict[str, Any] = {
        "auth0_id": f"test|{suffix}",
        "email": f"user-{suffix}@example.edu",
        "name": f"User {suffix}",
        "role": role,
    }
    values.update(fields)
    user = User(**values)
    session.add(user)
    session.flush()
    return user


def make_major(session: Session, **fields: Any) -> Major:
    suffix = _suffix()
    major = Major(**{"name": f"Major {suffix}", "slug": f"major-{suffix}", **fields})
    session.add(major)
    session.flush()
    return major


def make_course(session: Session, *, major: Major | None = None, **fields: Any) -> Course:
    major = major or make_major(session)
    suffix = _suffix()
    values = {
        "code": suffix,
        "name": f"Course {suffix}",
        "major_id": major.id,
        "year_id": 1,
        "semester": 1,
    }
    values.update(fields)
    course = Course(**values)
    session.add(course)
    session.flush()
    return course


def make_lecturer(session: Session, **fields: Any) -> Lecturer:
    lecturer = Lecturer(**{"name": f"Dr. {_suffix()}", **fields})
    session.add(lecturer)
    session.flush()
    return lecturer


def make_material_type(session: Session, **fields: Any) -> MaterialType:
    material_type = MaterialType(**{"display_name": f"Type {_suffix()}", **fields})
    session.add(material_type)
    session.flush()
    return material_type


def make_material(
    session: Session,
    *,
    course: Course | None = None,
    uploader: User | None = None,
    lecturer: Lecturer | None = None,
    material_type: MaterialType | None = None,
    created_at: datetime | None = None,
    **fields: Any,
) -> Material:
    """An approved material and the approved request it came from."""
    course = course or make_course(session)
    uploader = uploader or make_user(session)
    lecturer = lecturer or make_lecturer(session)
    material_type = material_type or make_material_type(session)
    suffix = _suffix()
    title = fields.pop("title", f"Material {suffix}")
    page_count = fields.pop("page_count", 10)
    sha256 = hashlib.sha256(suffix.encode()).hexdigest()
    file_url = f"{course.name}/{suffix}.pdf"
    created_at = created_at or datetime.now(UTC) - timedelta(seconds=1)
    request = FileRequest(
        user_id=uploader.id,
        course_id=course.id,
        type_id=material_type.id,
        lecturer_id=lecturer.id,
        title=title,
        academic_year=1,
        material_year=2024,
        file_url=file_url,
        original_filename=f"{suffix}.pdf",
        sha256=sha256,
        size_bytes=1000,
        page_count=page_count,
        status="approved",
        created_at=created_at,
    )
    session.add(request)
    session.flush()
    material = Material(
        id=request.id,
        title=title,
        academic_year=1,
        material_year=fields.pop("material_year", 2024),
        course_id=course.id,
        lecturer_id=lecturer.id,
        type_id=material_type.id,
        uploader_id=uploader.id,
        file_url=file_url,
        page_count=page_count,
        sha256=sha256,
        created_at=created_at,
        **fields,
    )
    session.add(material)
    session.flush()
    return material
