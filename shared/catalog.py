"""Catalog reads: majors, material types, lecturers, courses, published materials."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, select, tuple_
from sqlalchemy.orm import Session

from shared.db.models import Course, Lecturer, Major, Material, MaterialType
from shared.pagination import after_key, split_page

__all__ = [
    "MaterialFilters",
    "course_to_json",
    "get_material",
    "list_courses",
    "list_majors",
    "list_material_types",
    "list_materials",
    "material_to_json",
    "search_lecturers",
]


def list_majors(*, session: Session) -> list[dict[str, Any]]:
    majors = session.scalars(select(Major).order_by(Major.name))
    return [{"id": m.id, "name": m.name, "slug": m.slug} for m in majors]


def list_material_types(*, session: Session) -> list[dict[str, Any]]:
    types = session.scalars(select(MaterialType).order_by(MaterialType.display_name))
    return [{"id": t.id, "display_name": t.display_name} for t in types]


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_lecturers(*, session: Session, query: str | None, limit: int) -> list[dict[str, Any]]:
    statement = select(Lecturer).order_by(Lecturer.name).limit(limit)
    if query:
        statement = statement.where(Lecturer.name.ilike(f"%{_escape_like(query)}%", escape="\\"))
    return [{"id": lecturer.id, "name": lecturer.name} for lecturer in session.scalars(statement)]


def course_to_json(course: Course) -> dict[str, Any]:
    return {
        "id": course.id,
        "code": course.code,
        "name": course.name,
        "major_id": course.major_id,
        "year": course.year_id,
        "semester": course.semester,
    }


def list_courses(
    *,
    session: Session,
    major_id: uuid.UUID | None,
    year: int | None,
    semester: int | None,
) -> list[dict[str, Any]]:
    statement = select(Course).order_by(Course.year_id, Course.semester, Course.name)
    if major_id is not None:
        statement = statement.where(Course.major_id == major_id)
    if year is not None:
        statement = statement.where(Course.year_id == year)
    if semester is not None:
        statement = statement.where(Course.semester == semester)
    return [course_to_json(course) for course in session.scalars(statement)]


@dataclass(frozen=True)
class MaterialFilters:
    course_id: uuid.UUID | None = None
    type_id: uuid.UUID | None = None
    lecturer_id: uuid.UUID | None = None
    material_year: int | None = None


def _materials_query() -> Select[Material, str, str, str]:
    return (
        select(Material, Course.name, Lecturer.name, MaterialType.display_name)
        .join(Course, Course.id == Material.course_id)
        .join(Lecturer, Lecturer.id == Material.lecturer_id)
        .join(MaterialType, MaterialType.id == Material.type_id)
        # Hidden (unpublished) materials are invisible here, as if they did not exist.
        .where(Material.is_published)
    )


def material_to_json(
    material: Material, course_name: str, lecturer_name: str, type_name: str
) -> dict[str, Any]:
    return {
        "id": material.id,
        "title": material.title,
        "course_id": material.course_id,
        "course_name": course_name,
        "type_id": material.type_id,
        "type_name": type_name,
        "lecturer_id": material.lecturer_id,
        "lecturer_name": lecturer_name,
        "academic_year": material.academic_year,
        "material_year": material.material_year,
        "uploader_id": material.uploader_id,
        "notes": material.notes,
        "page_count": material.page_count,
        "ingest_status": material.ingest_status,
        "chunk_count": material.chunk_count,
        "ingest_error": material.ingest_error,
        "ingest_error_code": material.ingest_error_code,
        "ingest_started_at": material.ingest_started_at,
        "ingest_finished_at": material.ingest_finished_at,
        "created_at": material.created_at,
    }


def list_materials(
    *,
    session: Session,
    filters: MaterialFilters,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of published materials, newest first, and the next page's cursor."""
    after = after_key(cursor)
    statement = _materials_query().order_by(Material.created_at.desc(), Material.id.desc())
    if filters.course_id is not None:
        statement = statement.where(Material.course_id == filters.course_id)
    if filters.type_id is not None:
        statement = statement.where(Material.type_id == filters.type_id)
    if filters.lecturer_id is not None:
        statement = statement.where(Material.lecturer_id == filters.lecturer_id)
    if filters.material_year is not None:
        statement = statement.where(Material.material_year == filters.material_year)
    if after is not None:
        statement = statement.where(tuple_(Material.created_at, Material.id) < tuple_(*after))
    rows = session.execute(statement.limit(limit + 1)).all()
    page, next_cursor = split_page(rows, limit, lambda row: (row[0].created_at, row[0].id))
    return [material_to_json(*row) for row in page], next_cursor


def get_material(*, session: Session, material_id: uuid.UUID) -> dict[str, Any] | None:
    row = session.execute(_materials_query().where(Material.id == material_id)).first()
    if row is None:
        return None
    body = material_to_json(*row)
    body["file_url"] = row[0].file_url
    return body
