"""Catalog reads (majors, material types, lecturers, courses, published materials)
and the admin writes of the reference rows."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Select, func, select, tuple_
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared import audit
from shared.db.models import (
    Course,
    FileRequest,
    FileViewingSession,
    Lecturer,
    Major,
    Material,
    MaterialType,
    User,
    UserCourseActivity,
)
from shared.db.outage import FOREIGN_KEY_VIOLATION, sqlstate
from shared.errors import Conflict, NotFound, ValidationFailed
from shared.pagination import after_key, split_page

__all__ = [
    "COURSE",
    "LECTURER",
    "MAJOR",
    "MATERIAL_TYPE",
    "CatalogKind",
    "MaterialFilters",
    "course_to_json",
    "create",
    "delete",
    "get_course",
    "get_material",
    "lecturer_to_json",
    "list_courses",
    "list_majors",
    "list_material_types",
    "list_materials",
    "major_to_json",
    "material_to_json",
    "material_type_to_json",
    "merge_lecturers",
    "search_lecturers",
    "update",
]


def list_majors(*, session: Session) -> list[dict[str, Any]]:
    majors = session.scalars(select(Major).order_by(Major.name))
    return [{"id": m.id, "name": m.name, "slug": m.slug} for m in majors]


def list_material_types(*, session: Session) -> list[dict[str, Any]]:
    types = session.scalars(select(MaterialType).order_by(MaterialType.display_name))
    return [{"id": t.id, "display_name": t.display_name} for t in types]


def contains_pattern(text: str) -> str:
    """An ILIKE pattern (escape ``\\``) matching ``text`` anywhere, its ``%`` and ``_`` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_lecturers(*, session: Session, query: str | None, limit: int) -> list[dict[str, Any]]:
    statement = select(Lecturer).order_by(Lecturer.name).limit(limit)
    if query:
        statement = statement.where(Lecturer.name.ilike(contains_pattern(query), escape="\\"))
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


# --- Admin writes -----------------------------------------------------------
#
# The four reference kinds (majors, courses, material types, lecturers) are
# written the same way, so one description of each kind drives create, update
# and delete. Each function adds its audit row to the caller's transaction and
# never commits: the handler's transaction holds the change and its record.

# SQLSTATE of a unique violation (a natural key taken, possibly by a racing call).
UNIQUE_VIOLATION = "23505"

CatalogRow = Major | Course | Lecturer | MaterialType


def major_to_json(major: Major) -> dict[str, Any]:
    return {"id": major.id, "name": major.name, "slug": major.slug}


def material_type_to_json(material_type: MaterialType) -> dict[str, Any]:
    return {"id": material_type.id, "display_name": material_type.display_name}


def lecturer_to_json(lecturer: Lecturer) -> dict[str, Any]:
    return {"id": lecturer.id, "name": lecturer.name}


@dataclass(frozen=True)
class CatalogKind:
    """One kind of catalog row as the admin API writes it."""

    # The response key, the audit target_type and the suffix of audit actions.
    key: str
    # How messages name it ("material type").
    label: str
    model: type[CatalogRow]
    # API field -> model attribute (a course's "year" is the seed's year_id).
    columns: Mapping[str, str]
    # Unique constraint or index name -> the API field it guards.
    unique: Mapping[str, str]
    # API field -> the kind of row it must name (an unknown one is a 422).
    parents: Mapping[str, type[Major]]
    # (what, foreign key column): rows that keep this one from being deleted.
    references: tuple[tuple[str, InstrumentedAttribute[Any]], ...]
    to_json: Callable[[Any], dict[str, Any]]


MAJOR = CatalogKind(
    key="major",
    label="major",
    model=Major,
    columns={"name": "name", "slug": "slug"},
    unique={"uq_majors_name": "name", "uq_majors_slug": "slug"},
    parents={},
    references=(("courses", Course.major_id), ("users", User.major_id)),
    to_json=major_to_json,
)
COURSE = CatalogKind(
    key="course",
    label="course",
    model=Course,
    columns={
        "code": "code",
        "name": "name",
        "major_id": "major_id",
        "year": "year_id",
        "semester": "semester",
    },
    unique={"uq_courses_code": "code"},
    parents={"major_id": Major},
    references=(
        ("file requests", FileRequest.course_id),
        ("materials", Material.course_id),
        ("reading sessions", FileViewingSession.course_id),
        ("course activities", UserCourseActivity.course_id),
    ),
    to_json=course_to_json,
)
MATERIAL_TYPE = CatalogKind(
    key="material_type",
    label="material type",
    model=MaterialType,
    columns={"display_name": "display_name"},
    unique={"uq_material_types_display_name": "display_name"},
    parents={},
    references=(("file requests", FileRequest.type_id), ("materials", Material.type_id)),
    to_json=material_type_to_json,
)
LECTURER = CatalogKind(
    key="lecturer",
    label="lecturer",
    model=Lecturer,
    columns={"name": "name"},
    # The lower(name) index makes the same name in another case a duplicate.
    unique={"uq_lecturers_name": "name", "uq_lecturers_name_lower": "name"},
    parents={},
    references=(
        ("file requests", FileRequest.lecturer_id),
        ("materials", Material.lecturer_id),
    ),
    to_json=lecturer_to_json,
)


def _constraint_name(error: BaseException) -> str | None:
    """The constraint a pg8000 server error names (field ``n``), if any."""
    original = getattr(error, "orig", error)
    for arg in getattr(original, "args", ()):
        if isinstance(arg, dict) and isinstance(arg.get("n"), str):
            return str(arg["n"])
    return None


def _in_use(kind: CatalogKind, counts: Mapping[str, int] | None = None) -> Conflict:
    if not counts:
        return Conflict(f"this {kind.label} is still referred to", code="in_use")
    what = ", ".join(f"{name}: {count}" for name, count in counts.items())
    return Conflict(f"this {kind.label} is still referred to ({what})", code="in_use")


def _flush(session: Session, kind: CatalogKind) -> None:
    """Flush, turning the database's verdict on keys into the API's errors.

    The checks before a write cannot see a racing transaction; the constraints
    can, so they have the last word: a natural key taken meanwhile is a 409
    ``duplicate`` naming its field, a reference added meanwhile a 409 ``in_use``.
    """
    try:
        session.flush()
    except DBAPIError as error:
        code = sqlstate(error)
        if code == UNIQUE_VIOLATION:
            fields = list(kind.unique.values())
            field = kind.unique.get(_constraint_name(error) or "", fields[0])
            raise Conflict(
                f"another {kind.label} already has this {field}",
                code="duplicate",
                fields={field: "is already taken"},
            ) from None
        if code == FOREIGN_KEY_VIOLATION:
            raise _in_use(kind) from None
        raise


def _json_safe(values: Mapping[str, Any]) -> dict[str, Any]:
    # Audit meta is JSONB: ids go in as their strings.
    return {name: str(v) if isinstance(v, uuid.UUID) else v for name, v in values.items()}


def _fields(kind: CatalogKind, row: CatalogRow) -> dict[str, Any]:
    return {name: getattr(row, column) for name, column in kind.columns.items()}


def _locked(session: Session, kind: CatalogKind, row_id: uuid.UUID) -> CatalogRow:
    """The row, locked against concurrent writes for the rest of the transaction."""
    # Typed as the declarative base: a union of classes does not narrow its result.
    row = cast("CatalogRow | None", session.get(kind.model, row_id, with_for_update=True))
    if row is None:
        raise NotFound(f"no such {kind.label}")
    return row


def _check_parents(session: Session, kind: CatalogKind, values: Mapping[str, Any]) -> None:
    """Every id the values name must exist (422 naming the field otherwise).

    The parent is held with a key-share lock, as the insert itself would, so
    it cannot be deleted between this check and the write.
    """
    errors: dict[str, str] = {}
    for name, parent in kind.parents.items():
        if name not in values:
            continue
        found = session.scalar(
            select(parent.id).where(parent.id == values[name]).with_for_update(key_share=True)
        )
        if found is None:
            errors[name] = f"no such {name.removesuffix('_id')}"
    if errors:
        raise ValidationFailed(errors)


def create(
    session: Session, kind: CatalogKind, *, actor: User, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Add one row of ``kind`` from validated API fields; audited as ``create_<kind>``."""
    _check_parents(session, kind, values)
    row = kind.model(**{kind.columns[name]: value for name, value in values.items()})
    session.add(row)
    _flush(session, kind)
    audit.record(
        session,
        actor=actor,
        action=f"create_{kind.key}",
        target_type=kind.key,
        target_ids=[row.id],
        meta={"after": _json_safe(_fields(kind, row))},
    )
    return kind.to_json(row)


def update(
    session: Session,
    kind: CatalogKind,
    *,
    actor: User,
    row_id: uuid.UUID,
    changes: Mapping[str, Any],
) -> dict[str, Any]:
    """Apply validated API fields to one row; audited as ``update_<kind>`` with
    the changed fields before and after. Changing nothing writes nothing."""
    row = _locked(session, kind, row_id)
    _check_parents(session, kind, changes)
    before = _fields(kind, row)
    changed = {name: value for name, value in changes.items() if before[name] != value}
    if changed:
        for name, value in changed.items():
            setattr(row, kind.columns[name], value)
        _flush(session, kind)
        audit.record(
            session,
            actor=actor,
            action=f"update_{kind.key}",
            target_type=kind.key,
            target_ids=[row.id],
            meta={
                "before": _json_safe({name: before[name] for name in changed}),
                "after": _json_safe(changed),
            },
        )
    return kind.to_json(row)


def delete(session: Session, kind: CatalogKind, *, actor: User, row_id: uuid.UUID) -> None:
    """Delete one row nothing refers to (409 ``in_use`` otherwise); audited as
    ``delete_<kind>`` with its fields.

    The row lock waits for any transaction still adding a reference to it
    (that insert holds a key-share lock on the row), so the counts below see
    it; one that starts later waits for this delete and then fails.
    """
    row = _locked(session, kind, row_id)
    counts: dict[str, int] = {}
    for name, column in kind.references:
        count = session.scalar(select(func.count()).where(column == row_id)) or 0
        if count:
            counts[name] = count
    if counts:
        raise _in_use(kind, counts)
    before = _fields(kind, row)
    session.delete(row)
    _flush(session, kind)
    audit.record(
        session,
        actor=actor,
        action=f"delete_{kind.key}",
        target_type=kind.key,
        target_ids=[row_id],
        meta={"before": _json_safe(before)},
    )


def _moved(
    session: Session,
    model: type[FileRequest] | type[Material],
    lecturer_id: uuid.UUID,
    into_id: uuid.UUID,
) -> int:
    """Point every row of ``model`` naming one lecturer at another; how many moved."""
    result = session.execute(
        sql_update(model).where(model.lecturer_id == lecturer_id).values(lecturer_id=into_id)
    )
    # An UPDATE's result is a CursorResult; Session.execute is typed for any statement.
    return int(cast("CursorResult[Any]", result).rowcount)


def merge_lecturers(
    session: Session, *, actor: User, lecturer_id: uuid.UUID, into_id: uuid.UUID
) -> tuple[dict[str, Any], dict[str, int]]:
    """Move every request and material of one lecturer to another, then delete it.

    Returns the remaining lecturer and how many rows moved. Audited as
    ``merge_lecturer`` naming both ids.
    """
    if lecturer_id == into_id:
        raise ValidationFailed({"into_id": "must be another lecturer"})
    # Both rows locked in id order, so two crossing merges cannot deadlock.
    locked = session.scalars(
        select(Lecturer)
        .where(Lecturer.id.in_([lecturer_id, into_id]))
        .order_by(Lecturer.id)
        .with_for_update()
    ).all()
    rows = {lecturer.id: lecturer for lecturer in locked}
    source, target = rows.get(lecturer_id), rows.get(into_id)
    if source is None:
        raise NotFound("no such lecturer")
    if target is None:
        raise ValidationFailed({"into_id": "no such lecturer"})
    moved = {
        "requests": _moved(session, FileRequest, lecturer_id, into_id),
        "materials": _moved(session, Material, lecturer_id, into_id),
    }
    session.delete(source)
    _flush(session, LECTURER)
    audit.record(
        session,
        actor=actor,
        action="merge_lecturer",
        target_type="lecturer",
        target_ids=[lecturer_id, into_id],
        meta={
            "from": _json_safe(lecturer_to_json(source)),
            "into": _json_safe(lecturer_to_json(target)),
            **moved,
        },
    )
    return lecturer_to_json(target), moved


def get_course(*, session: Session, course_id: uuid.UUID) -> dict[str, Any] | None:
    """One course with its major and how many materials it has, or None."""
    row = session.execute(
        select(Course, Major)
        .outerjoin(Major, Major.id == Course.major_id)
        .where(Course.id == course_id)
    ).first()
    if row is None:
        return None
    course, major = row
    # What students can see: hidden (unpublished) materials do not count.
    count = (
        session.scalar(
            select(func.count()).where(Material.course_id == course_id, Material.is_published)
        )
        or 0
    )
    return {
        **course_to_json(course),
        "major": major_to_json(major) if major is not None else None,
        "materials_count": count,
    }
